from django.urls import path
from rest_framework.routers import DefaultRouter

from campaigns.api import broadcasts, views

router = DefaultRouter()
router.register("campaigns", views.CampaignViewSet, basename="campaign")
router.register("broadcasts", broadcasts.BroadcastViewSet, basename="broadcast")

urlpatterns = [
    path("enrollments/", views.EnrollmentList.as_view(), name="enrollments"),
    path("messages/", views.MessageList.as_view(), name="messages"),
    path("subscribe/", views.Subscribe.as_view(), name="subscribe"),
    *router.urls,
]

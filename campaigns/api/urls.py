from django.urls import path
from rest_framework.routers import DefaultRouter

from campaigns.api import views

router = DefaultRouter()
router.register("campaigns", views.CampaignViewSet, basename="campaign")

urlpatterns = [
    path("enrollments/", views.EnrollmentList.as_view(), name="enrollments"),
    path("messages/", views.MessageList.as_view(), name="messages"),
    path("subscribe/", views.Subscribe.as_view(), name="subscribe"),
    *router.urls,
]

from django.urls import path
from rest_framework.routers import DefaultRouter

from campaigns.api import broadcasts, delivery, surveys, templates, views

router = DefaultRouter()
router.register("campaigns", views.CampaignViewSet, basename="campaign")
router.register("broadcasts", broadcasts.BroadcastViewSet, basename="broadcast")
router.register("surveys", surveys.SurveyViewSet, basename="survey")
router.register("suppressions", delivery.SuppressionViewSet, basename="suppression")
router.register("webhook-deliveries", delivery.WebhookDeliveryViewSet, basename="webhook-delivery")

# Authoring (issue 16): email templates; the campaign authoring actions are on
# CampaignViewSet (create, update, validate, publish, pause, resume, archive, versions).
router.register("email-templates", templates.EmailTemplateViewSet, basename="email-template")

urlpatterns = [
    path("enrollments/", views.EnrollmentList.as_view(), name="enrollments"),
    path("messages/", views.MessageList.as_view(), name="messages"),
    path("subscribe/", views.Subscribe.as_view(), name="subscribe"),
    *router.urls,
]

from django.urls import path
from rest_framework.routers import DefaultRouter

from crm.api import segments, topics, views

router = DefaultRouter(trailing_slash=True)
router.register("contacts", views.ContactViewSet, basename="contact")
router.register("orders", views.OrderViewSet, basename="order")
router.register("segments", segments.SegmentViewSet, basename="segment")
router.register("topics", topics.TopicViewSet, basename="topic")

urlpatterns = [
    path("events/", views.EventListCreate.as_view(), name="events"),
    path("products/", views.ProductListUpsert.as_view(), name="products"),
    path("products/events/", views.ProductEventCreate.as_view(), name="product-events"),
    path("back-in-stock/", views.BackInStockCreate.as_view(), name="back-in-stock"),
    path("marketing-spend/", views.MarketingSpendListUpsert.as_view(), name="marketing-spend"),
    path("health/", views.Health.as_view(), name="health"),
    *router.urls,
]

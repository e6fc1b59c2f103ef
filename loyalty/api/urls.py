from django.urls import path

from loyalty.api import views

urlpatterns = [
    path("loyalty/contacts/<int:contact_id>/", views.Summary.as_view(), name="loyalty-summary"),
    path(
        "loyalty/contacts/<int:contact_id>/ledger/", views.Ledger.as_view(), name="loyalty-ledger"
    ),
    path(
        "loyalty/contacts/<int:contact_id>/referrals/",
        views.Referrals.as_view(),
        name="loyalty-referrals",
    ),
    path("loyalty/points/award/", views.PointsAward.as_view(), name="points-award"),
    path("loyalty/points/redeem/", views.PointsRedeem.as_view(), name="points-redeem"),
    path("loyalty/credit/grant/", views.CreditGrant.as_view(), name="credit-grant"),
    path("loyalty/credit/redeem/", views.CreditRedeem.as_view(), name="credit-redeem"),
]

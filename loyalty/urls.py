"""Loyalty's public pages (no login): the share link's landing page and the signed
referral page. Included at the site root by config/urls.py."""

from django.urls import path

from loyalty import public

urlpatterns = [
    path("r/<str:code>/", public.referral_landing, name="referral-landing"),
    path("p/<str:token>/referral/", public.referral_page, name="referral-page"),
]

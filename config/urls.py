from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from campaigns import public
from crm.api import tracking

admin.site.site_header = "Keepers"
admin.site.site_title = "Keepers"
admin.site.index_title = "Customer lifecycle"

# Django's own 400s (an oversized body) and 404s (a path no route matches) answer in the
# API's JSON error shape on API paths.
handler400 = "crm.api.errors.bad_request"
handler404 = "crm.api.errors.not_found"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("anymail/", include("config.webhooks")),  # Anymail's, 404 when not configured
    path("api/v1/", include("crm.api.urls")),
    path("api/v1/", include("campaigns.api.urls")),
    path("api/v1/", include("loyalty.api.urls")),
    path("api/v1/", include("loyalty.api.coupons")),
    path("api/v1/", include("crm.api.metrics")),
    path("api/v1/", include("crm.api.clv")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path(
        "api/docs/",  # the split view serves its script from ?script: no inline script
        SpectacularSwaggerSplitView.as_view(url_name="schema", template_name="crm/api_docs.html"),
        name="api-docs",
    ),
    path("u/<str:token>/", public.unsubscribe, name="unsubscribe"),
    path("p/renew/", public.renew, name="preferences-renew"),
    path("", include("loyalty.urls")),  # /r/<code>/ and /p/<token>/referral/
    path("p/<str:token>/", public.preference_center, name="preferences"),
    path("subscribe/", public.subscribe, name="subscribe"),
    path("c/<str:token>/", public.confirm, name="subscribe-confirm"),
    path("", include("campaigns.public_surveys")),  # /s/<token>/
    path("v1/batch", tracking.batch, name="track-batch"),
    *[
        path(f"v1/{kind}", tracking.single(kind), name=f"track-{kind}")
        for kind in ("identify", "track", "page", "screen", "alias", "group")
    ],
]

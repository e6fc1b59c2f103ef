"""Predicted CLV in the API: the fitted BG/NBD and Gamma-Gamma model (read, or fit now) and a
contact's predictions.

    GET  /api/v1/metrics/clv-model/?as_of=YYYY-MM-DD   the latest successful fit, or the
                                                       latest one for that as_of; 404 if none
    POST /api/v1/metrics/clv-model/                    fit now (write key); body optional:
                                                       {"as_of", "horizon_months", "monthly_discount"}
    GET  /api/v1/contacts/{id}/clv/                    the contact's predictions; 404 if none

The model: {"unit": "week", "customers": n, "bgnbd": {"r", "alpha", "a", "b", "dropout",
"log_likelihood"}, "gamma_gamma": {"p", "q", "gamma", "nu", "customers"}, "as_of",
"fitted_at"}. "dropout" is null, except for BG/NBD's limit where every customer has the
same dropout probability after a purchase: then a and b are null and "dropout" is that
probability (the fit lands there when a and b run off together; see crm.clv.BgNbdFit).
Likewise "nu" is null except for Gamma-Gamma's limit with one spend rate for everyone
(q and gamma null; mean spend per purchase p/nu; see crm.clv.GammaGammaFit).
Time is in weeks: α is in weeks, and so are a contact's t_x and T. Money is a decimal
string in the base currency, as everywhere in the API."""

from __future__ import annotations

import datetime as dt

from django.urls import path
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from crm import clock
from crm.clv import ClvError
from crm.errors import KeepersError, NotFound
from crm.models import ClvModelFit, Contact, ContactClv
from crm.services.clv_fits import clv_fit, clv_latest, clv_stages_follow
from crm.services.parsing import parse_int, reject_unknown

UNITS = {7: "week", 1: "day"}


def _unit(fit: ClvModelFit) -> str:
    return UNITS.get(fit.unit_days, f"{fit.unit_days} days")


def _money(value: float) -> str:
    return f"{value:.2f}"


def model_data(fit: ClvModelFit) -> dict:
    return {
        "unit": _unit(fit),
        "customers": fit.customers,
        "bgnbd": {
            "r": fit.r,
            "alpha": fit.alpha,
            "a": fit.a,
            "b": fit.b,
            "dropout": fit.dropout,
            "log_likelihood": fit.bgnbd_log_likelihood,
        },
        "gamma_gamma": {
            "p": fit.p,
            "q": fit.q,
            "gamma": fit.gamma,
            "nu": fit.nu,
            "customers": fit.gg_customers,
        },
        "as_of": fit.as_of.isoformat(),
        "fitted_at": serializers.DateTimeField().to_representation(fit.fitted_at),
    }


def contact_clv_data(row: ContactClv) -> dict:
    fit = row.fit
    return {
        "contact_id": row.contact_id,
        "as_of": fit.as_of.isoformat(),
        "fitted_at": serializers.DateTimeField().to_representation(fit.fitted_at),
        "unit": _unit(fit),
        "currency": fit.currency,
        "x": row.x,
        "t_x": row.t_x,
        "T": row.T,
        "zbar": _money(row.zbar),
        "probability_alive": row.probability_alive,
        "expected_purchases": {
            "30d": row.purchases_30d,
            "90d": row.purchases_90d,
            "365d": row.purchases_365d,
        },
        "expected_spend": _money(row.expected_spend),
        "predicted_clv": _money(row.predicted_clv),
        "horizon_months": fit.horizon_months,
        "monthly_discount": fit.monthly_discount,
        "historic_clv": _money(float(row.historic_clv)),
    }


def _as_of(value: object, field: str = "as_of") -> dt.date:
    if not isinstance(value, str):
        raise KeepersError("Expected a date (YYYY-MM-DD).", field=field)
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise KeepersError(f"'{value}' is not a date (YYYY-MM-DD).", field=field) from None


def _fit_options(data: object) -> dict:
    if data in (None, ""):
        return {}
    if not isinstance(data, dict):
        raise KeepersError("Send a JSON object, or nothing.")
    reject_unknown(data, {"as_of", "horizon_months", "monthly_discount"})
    options: dict = {}
    if data.get("as_of") is not None:
        options["as_of"] = _as_of(data["as_of"])
        if options["as_of"] > clock.now().astimezone(dt.UTC).date():
            raise KeepersError("as_of cannot be in the future.", field="as_of")
    if data.get("horizon_months") is not None:
        months = parse_int(data["horizon_months"], "horizon_months", minimum=1)
        if months > 1200:
            raise KeepersError("At most 1200 months.", field="horizon_months")
        options["horizon_months"] = months
    if data.get("monthly_discount") is not None:
        rate = data["monthly_discount"]
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate < 1:
            raise KeepersError(
                "A monthly rate from 0 to 1 (0.01 for 1%).", field="monthly_discount"
            )
        options["monthly_discount"] = float(rate)
    return options


class ClvModelView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("as_of", str, description="YYYY-MM-DD (default: latest)")],
        responses={
            200: OpenApiResponse(description="The fitted model (see the module docstring)"),
            404: OpenApiResponse(description="No successful fit (for that as_of)"),
        },
    )
    def get(self, request: Request) -> Response:
        """The BG/NBD and Gamma-Gamma parameters of the latest successful fit (or of the
        latest fit for `as_of`), with their log-likelihood and sample sizes, in weeks."""
        raw = request.query_params.get("as_of")
        as_of = _as_of(raw) if raw else None
        fit = clv_latest(as_of=as_of)
        if fit is None:
            where = f" as of {as_of}" if as_of else ""
            raise NotFound(f"No CLV model has been fitted{where} yet.")
        return Response(model_data(fit))

    @extend_schema(
        request=None,
        responses={
            201: OpenApiResponse(description="The new fit"),
            400: OpenApiResponse(description="The data could not be fitted (code clv_fit)"),
        },
    )
    def post(self, request: Request) -> Response:
        """Fit now on the orders up to `as_of` (default today), storing the fit and, when it
        is the latest, every customer's predictions. Synchronous: seconds for a small shop,
        up to a minute for millions of orders (the nightly task does the same)."""
        fit = clv_fit(**_fit_options(request.data))
        if fit.status != ClvModelFit.Status.OK:
            error = ClvError(fit.error)
            error.details = {"fit_id": fit.pk, "as_of": fit.as_of.isoformat()}
            raise error
        clv_stages_follow(fit=fit)
        return Response(model_data(fit), status=201)


class ContactClvView(APIView):
    @extend_schema(
        responses={
            200: OpenApiResponse(description="The contact's predictions and historic CLV"),
            404: OpenApiResponse(description="No prediction for this contact"),
        },
    )
    def get(self, request: Request, contact_id: int) -> Response:
        """The contact's predictions from the latest fit: probability alive, expected
        purchases in the next 30/90/365 days, expected spend per purchase, predicted CLV
        over the fit's horizon, and historic CLV (net revenue up to the fit's as_of)."""
        row = ContactClv.objects.select_related("fit").filter(contact_id=contact_id).first()
        if row is None:
            if not Contact.objects.filter(pk=contact_id).exists():
                raise NotFound(f"No contact #{contact_id}.", field="contact_id")
            raise NotFound(
                f"No CLV prediction for contact #{contact_id}: it is not a customer in the "
                "base currency as of the latest fit, or no fit has succeeded yet.",
                field="contact_id",
            )
        return Response(contact_clv_data(row))


urlpatterns = [
    path("metrics/clv-model/", ClvModelView.as_view(), name="metrics-clv-model"),
    path("contacts/<int:contact_id>/clv/", ContactClvView.as_view(), name="contact-clv"),
]

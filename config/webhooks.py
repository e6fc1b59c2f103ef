"""Anymail's webhook URLs (/anymail/<esp>/...), each refusing when its ESP is not
configured: a missing setting (Mailgun's signing key, MailerSend's secret, a package the
ESP needs) or no authentication at all (no ANYMAIL_WEBHOOK_SECRET and no signature key)
answers 404 instead of Anymail's 500 or its warning-and-accept. Configured endpoints are
Anymail's views: a wrong secret or signature is its 400/401, and so is a body too malformed
for its signature check to read (Mailgun's check raises a TypeError on `[]`: a 500)."""

from __future__ import annotations

import functools
import logging

from anymail import urls as anymail_urls
from anymail.exceptions import AnymailWebhookValidationFailure
from anymail.webhooks.mandrill import MandrillSignatureMixin
from django.core.exceptions import ImproperlyConfigured
from django.http import Http404
from django.urls import URLPattern

logger = logging.getLogger(__name__)

app_name = anymail_urls.app_name


def _unauthenticated(view) -> bool:
    if getattr(view, "warn_if_no_basic_auth", False) and not getattr(view, "basic_auth", None):
        return True  # Anymail would warn, then take anyone's events
    # Mandrill checks for its key only when a POST arrives (its HEAD comes before the key)
    return isinstance(view, MandrillSignatureMixin) and view.webhook_key is None


def _malformed_is_refused(run_validators):
    def validate(request) -> None:
        try:
            run_validators(request)
        except (TypeError, KeyError, ValueError, AttributeError) as error:
            if isinstance(error, AnymailWebhookValidationFailure):
                raise
            raise AnymailWebhookValidationFailure(f"malformed webhook body: {error}") from error

    return validate


def _refusing_when_not_configured(callback):
    view_class, initkwargs = callback.view_class, callback.view_initkwargs

    @functools.wraps(callback)  # keeps csrf_exempt and login_not_required
    def view(request, *args, **kwargs):
        try:
            handler = view_class(**initkwargs)  # reads the ESP's settings
            if request.method != "HEAD" and _unauthenticated(handler):
                raise ImproperlyConfigured("no webhook secret and no signing key")
            handler.run_validators = _malformed_is_refused(handler.run_validators)
            handler.setup(request, *args, **kwargs)
            return handler.dispatch(request, *args, **kwargs)
        except ImproperlyConfigured as error:  # includes AnymailImproperlyInstalled
            logger.warning("%s webhook refused, not configured: %s", view_class.__name__, error)
            raise Http404("This ESP's webhook is not configured.") from None

    return view


urlpatterns = [
    URLPattern(
        pattern.pattern,
        _refusing_when_not_configured(pattern.callback),
        pattern.default_args,
        pattern.name,
    )
    for pattern in anymail_urls.urlpatterns
]

"""OpenAPI: describe API key authentication (Bearer) to drf-spectacular."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "crm.api.auth.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A Keepers API key: `Authorization: Bearer kp_…`. Create one in "
            "the admin or with `manage.py create_api_key NAME --scope write`.",
        }

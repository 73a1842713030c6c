"""drf-spectacular extensions (imported by AnnotateConfig.ready, before any schema is made) and the schema's
postprocessing hook."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object

from annotate.api.authentication import UserOrProjectApiToken


class ProjectApiTokenScheme(OpenApiAuthenticationExtension):
    """The bearer scheme of project API tokens, listed only on the operations that accept one."""

    target_class = "annotate.api.authentication.ProjectApiTokenAuthentication"
    name = "projectApiToken"

    def get_security_requirement(self, auto_schema):
        if UserOrProjectApiToken in getattr(auto_schema.view, "permission_classes", ()):
            return {self.name: []}
        return None

    def get_security_definition(self, auto_schema):
        scheme = build_bearer_security_scheme_object(header_name="Authorization", token_prefix="Bearer")
        scheme["description"] = (
            "A project API token (plt_…), made by a lead of the project. It only scores and ranks responses "
            "with that project's reward models (…/score/ and …/best-of-n/)."
        )
        return scheme


# What any operation that reads a body may answer before its view runs, in the one error shape.
BODY_ERRORS = {
    "413": "The body is larger than this server accepts.",
    "415": "The body is not in a media type this operation reads (JSON; an import: multipart).",
}


def document_body_errors(result, generator, request, public):
    """POSTPROCESSING_HOOKS: the body errors on every operation with a request body."""
    for methods in result["paths"].values():
        for operation in methods.values():
            if "requestBody" not in operation:
                continue
            for status, description in BODY_ERRORS.items():
                operation["responses"].setdefault(
                    status,
                    {
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                        "description": description,
                    },
                )
    return result

"""GET /api/whoami: which key is calling, and with what role (for clients such as `bt`)."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from .models import Role
from .permissions import IsReporter
from .schema import problems

WHOAMI = inline_serializer(
    name="WhoAmI",
    fields={
        "name": serializers.CharField(help_text="The key's name: assignee, claim holder, actor."),
        "role": serializers.ChoiceField(choices=Role.choices),
    },
)


class WhoAmIView(APIView):
    permission_classes = [IsReporter]

    @extend_schema(
        summary="The calling key's name and role",
        description="Any valid key may ask; no key is a 401.",
        responses={200: WHOAMI, **problems(401)},
    )
    def get(self, request):
        return Response({"name": request.user.name, "role": request.user.role})

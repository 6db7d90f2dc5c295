"""Make an API token for a staff user and print it (it is shown once)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from api.tokens import api_token_create


class Command(BaseCommand):
    help = "Make an API token for a staff user; prints the token, which is not stored."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="command line", help="What uses this token.")

    def handle(self, *args, username: str, name: str, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        if not user.is_staff or not user.is_active:
            raise CommandError(
                f"{username!r} is not an active staff user; the API's staff endpoints need one."
            )
        _, key = api_token_create(user=user, name=name)
        self.stderr.write(f"Token {name!r} for {username}; send it as 'Authorization: Bearer <token>':")
        self.stdout.write(key)

"""A small Discord stand-in on loopback: enough REST and gateway for real discord.py.

It speaks the gateway (HELLO, IDENTIFY, READY, GUILD_CREATE, heartbeats) over plain JSON text
frames, answers the REST routes the bot uses, records every message the bot creates, edits or
deletes, and lets a test play users: `command(...)` (with attachments too), `click(...)`,
`select(...)` (a select menu's choice), `context_menu(...)` and `submit(...)` (a modal's form)
send INTERACTION_CREATE. It keeps the messages that answer interactions (ephemeral ones too:
`answer(...)`), so that their components can be used. It is also the CDN: `attachment(...)`
puts a file on it, as does every file the bot sends, served over plain HTTP with a
signed-looking query string, answered late or with an error status when a test asks. As
Discord does, it refuses a message with a file over the server's upload limit (`upload_limit`,
which tests may lower) with HTTP 413, and reports the limit in interactions and, by the boost
level, in the guild.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import mimetypes
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import BodyPartReader, web
from PIL import Image, UnidentifiedImageError

APP_ID = 900000000000000001
BOT_ID = 900000000000000002
GUILD_ID = 800000000000000001
CHANNEL_ID = 800000000000000002
OTHER_CHANNEL_ID = 800000000000000003
AGE_RESTRICTED_ID = 800000000000000004  # a channel with Discord's nsfw flag on
THREAD_ID = 800000000000000005  # a thread of CHANNEL_ID, which is not age-restricted
AGE_RESTRICTED_THREAD_ID = 800000000000000006  # a thread of AGE_RESTRICTED_ID
LOG_CHANNEL_ID = 800000000000000007  # a channel for a moderation log, not age-restricted
EVERYONE = GUILD_ID

DEFAULT_UPLOAD_LIMIT = 10 * 2**20  # an unboosted server's (premium tier 0)
MANAGE_GUILD = 1 << 5
MEMBER_PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 15) | (1 << 31)  # view, send, files, app cmds
ADMIN_PERMISSIONS = MEMBER_PERMISSIONS | MANAGE_GUILD


def _now() -> str:
    return datetime.now(UTC).isoformat()


def user_payload(user_id: int, name: str, *, bot: bool = False) -> dict[str, Any]:
    return {
        "id": str(user_id),
        "username": name,
        "discriminator": "0",
        "global_name": name,
        "avatar": None,
        "bot": bot,
    }


@dataclass
class Member:
    id: int
    name: str
    admin: bool = False
    locale: str = "en-US"  # the language of the member's Discord client
    roles: tuple[int, ...] = ()  # besides @everyone; the guild knows TRUSTED

    def payload(self) -> dict[str, Any]:
        permissions = ADMIN_PERMISSIONS if self.admin else MEMBER_PERMISSIONS
        return {
            "user": user_payload(self.id, self.name),
            "roles": [str(role) for role in self.roles],
            "joined_at": _now(),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "permissions": str(permissions),
        }


TRUSTED = 800000000000000009  # a role of the guild, e.g. one an AutoMod rule exempts
# The members the tests use.
ALICE = Member(100000000000000001, "alice")
BOB = Member(100000000000000002, "bob")
ADMIN = Member(100000000000000003, "admin", admin=True)
CAROL = Member(100000000000000004, "carol")
YUKI = Member(100000000000000011, "yuki", locale="ja")  # a member whose Discord is in Japanese
DAVE = Member(100000000000000005, "dave", roles=(TRUSTED,))
CHANNEL_NAMES = {
    CHANNEL_ID: "art",
    OTHER_CHANNEL_ID: "chat",
    AGE_RESTRICTED_ID: "after-dark",
    LOG_CHANNEL_ID: "mod-log",
}
THREADS = {THREAD_ID: CHANNEL_ID, AGE_RESTRICTED_THREAD_ID: AGE_RESTRICTED_ID}  # their parents


@dataclass
class Event:
    """One REST call the bot made that changed something."""

    kind: str  # "create", "edit", "delete", "callback", "original"
    channel_id: int | None
    message_id: int | None
    payload: dict[str, Any]
    files: dict[str, bytes]
    at: float = field(default_factory=time.monotonic)


@dataclass
class CdnFile:
    """A file on the fake CDN and how it is served."""

    data: bytes
    status: int = 200
    delay_s: float = 0.0  # before the answer starts: for fetches that time out


# What Discord's CDN URLs end with: a signature the bot must never log.
SIGNATURE = "ex=68a1b2c3&is=68a06143&hm=5f2c0ffee5ec7e75ec7e75ec7e7&"


class FakeDiscord:
    def __init__(self, guild_locale: str = "en-US") -> None:
        self.guild_locale = guild_locale  # the server's language, for public messages
        self.ids = itertools.count(700000000000000001)
        self.events: list[Event] = []
        self.messages: dict[int, dict[str, Any]] = {}
        self.callbacks: dict[int, dict[str, Any]] = {}
        self.answers: dict[int, int] = {}  # interaction -> the message answering it
        self.pressed: dict[int, int] = {}  # interaction -> the message whose component it used
        self.commands: list[dict[str, Any]] = []
        self.heartbeats: list[float] = []
        self.identified = asyncio.Event()
        self.sockets: list[web.WebSocketResponse] = []
        self.sequence = 0
        self.heartbeat_interval_ms = 250
        self.refuse_messages = False  # answer channel message writes with 403 Missing Permissions
        self.hang_messages = False  # take channel message writes and never answer them
        self.hung = 0  # message writes left unanswered
        self.upload_limit = DEFAULT_UPLOAD_LIMIT  # bytes a file may have
        self.too_large: list[dict[str, int]] = []  # the files of each message refused for size
        self.changed = asyncio.Condition()
        self.cdn: dict[str, CdnFile] = {}  # by URL path
        self.cdn_hits: Counter[str] = Counter()  # fetches, by URL path
        self.automod_rules: dict[int, dict[str, Any]] = {}  # the guild's, by rule id
        self.automod_readable = True  # False: listing them answers 403, as without Manage Server
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.base_url = ""

    # -- server ---------------------------------------------------------------------------
    async def start(self) -> None:
        await self._serve(port=0)
        self.base_url = f"http://127.0.0.1:{self.port}"

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 2**20)
        api = "/api/v10"
        app.router.add_get(f"{api}/users/@me", self._me)
        app.router.add_get(f"{api}/oauth2/applications/@me", self._application)
        app.router.add_put(f"{api}/applications/{{app}}/commands", self._sync)
        app.router.add_put(f"{api}/applications/{{app}}/guilds/{{guild}}/commands", self._sync)
        app.router.add_post(f"{api}/interactions/{{id}}/{{token}}/callback", self._callback)
        app.router.add_patch(f"{api}/webhooks/{{app}}/{{token}}/messages/@original", self._original)
        app.router.add_post(f"{api}/webhooks/{{app}}/{{token}}", self._followup)
        app.router.add_post(f"{api}/channels/{{channel}}/messages", self._create)
        app.router.add_patch(f"{api}/channels/{{channel}}/messages/{{message}}", self._edit)
        app.router.add_delete(f"{api}/channels/{{channel}}/messages/{{message}}", self._delete)
        app.router.add_get(f"{api}/channels/{{channel}}/messages/{{message}}", self._get_message)
        app.router.add_get(
            f"{api}/guilds/{{guild}}/auto-moderation/rules", self._automod_rules_list
        )
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{channel}/{id}/{name}", self._cdn)
        return app

    async def _serve(self, port: int) -> None:
        self.runner = web.AppRunner(self._app(), shutdown_timeout=1.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        for socket in list(self.sockets):
            await socket.close()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def go_offline(self) -> None:
        """Discord becomes unreachable: open connections drop and new ones are refused."""
        await self.stop()

    async def go_online(self) -> None:
        """Discord is back, at the same address."""
        await self._serve(self.port)

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/gateway"

    async def _record(self, event: Event) -> None:
        self.events.append(event)
        async with self.changed:
            self.changed.notify_all()

    async def wait_for(self, predicate: Any, timeout: float = 60) -> Any:
        """Wait until `predicate()` returns something truthy, and return it."""

        async def check() -> Any:
            async with self.changed:
                while not (result := predicate()):
                    await self.changed.wait()
                return result

        return await asyncio.wait_for(check(), timeout)

    # -- REST ---------------------------------------------------------------------------
    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        self.cdn_hits[request.path] += 1
        served = self.cdn.get(request.path)
        if served is None:
            return web.Response(status=404)
        await asyncio.sleep(served.delay_s)
        if served.status != 200:
            return web.Response(status=served.status)
        return web.Response(body=served.data, content_type="application/octet-stream")

    def attachment(
        self,
        name: str,
        data: bytes,
        content_type: str | None,
        *,
        size: int | None = None,
        width: int | None = None,
        height: int | None = None,
        status: int = 200,
        delay_s: float = 0.0,
        url: str | None = None,
    ) -> dict[str, Any]:
        """Put `data` on the CDN; the attachment as Discord describes it, declaring `size`
        (by default the real one), `content_type` and the picture's width and height."""
        attachment_id = next(self.ids)
        path = f"/attachments/{CHANNEL_ID}/{attachment_id}/{name}"
        self.cdn[path] = CdnFile(data, status, delay_s)
        link = url or f"{self.base_url}{path}?{SIGNATURE}"
        payload: dict[str, Any] = {
            "id": str(attachment_id),
            "filename": name,
            "size": len(data) if size is None else size,
            "url": link,
            "proxy_url": link,
        }
        if content_type is not None:
            payload["content_type"] = content_type
        if width is not None and height is not None:
            payload.update(width=width, height=height)
        return payload

    def hits(self, attachment: dict[str, Any]) -> int:
        """How often the bot fetched `attachment`."""
        return self.cdn_hits[attachment["url"].split("?")[0].removeprefix(self.base_url)]

    async def post(
        self,
        member: Member,
        content: str,
        attachments: list[dict[str, Any]],
        channel_id: int = CHANNEL_ID,
    ) -> int:
        """A member posts a message (with `attachments`) in a channel; returns its id."""
        message_id = next(self.ids)
        self.messages[message_id] = {
            **self._message(message_id, channel_id, {"content": content}, {}),
            "author": user_payload(member.id, member.name),
            "attachments": attachments,
        }
        return message_id

    async def _me(self, request: web.Request) -> web.Response:
        return _json(user_payload(BOT_ID, "pseudo-dalle", bot=True))

    async def _application(self, request: web.Request) -> web.Response:
        return _json(
            {
                "id": str(APP_ID),
                "name": "pseudo-dalle",
                "icon": None,
                "description": "",
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "owner": user_payload(1, "owner"),
                "team": None,
                "flags": 0,
            }
        )

    async def _sync(self, request: web.Request) -> web.Response:
        commands = await request.json()
        for command in commands:
            command.setdefault("id", str(next(self.ids)))
            command.setdefault("description", "")  # context menus have none
            command.update({"application_id": str(APP_ID), "version": "1"})
        self.commands = commands
        return _json(commands)

    async def _automod_rules_list(self, request: web.Request) -> web.Response:
        if not self.automod_readable:
            return _json({"message": "Missing Permissions", "code": 50013}, status=403)
        return _json(list(self.automod_rules.values()))

    def automod_rule(
        self,
        keywords: tuple[str, ...] = (),
        *,
        patterns: tuple[str, ...] = (),
        allowed: tuple[str, ...] = (),
        exempt_roles: tuple[int, ...] = (),
        enabled: bool = True,
        rule_id: int | None = None,
    ) -> dict[str, Any]:
        """An AutoMod keyword rule of the guild, as Discord sends it."""
        return {
            "id": str(rule_id or next(self.ids)),
            "guild_id": str(GUILD_ID),
            "name": "keywords",
            "creator_id": "1",
            "event_type": 1,
            "trigger_type": 1,
            "trigger_metadata": {
                "keyword_filter": list(keywords),
                "regex_patterns": list(patterns),
                "allow_list": list(allowed),
            },
            "actions": [{"type": 1, "metadata": {}}],
            "enabled": enabled,
            "exempt_roles": [str(role) for role in exempt_roles],
            "exempt_channels": [],
        }

    async def set_automod_rule(self, rule: dict[str, Any]) -> None:
        """An admin creates or changes a rule: the gateway says so."""
        known = int(rule["id"]) in self.automod_rules
        self.automod_rules[int(rule["id"])] = rule
        event = "AUTO_MODERATION_RULE_UPDATE" if known else "AUTO_MODERATION_RULE_CREATE"
        await self._dispatch(self.sockets[-1], event, rule)

    async def delete_automod_rule(self, rule_id: int) -> None:
        rule = self.automod_rules.pop(rule_id)
        await self._dispatch(self.sockets[-1], "AUTO_MODERATION_RULE_DELETE", rule)

    async def _read(self, request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
        if not request.content_type.startswith("multipart/"):
            return (await request.json() if request.can_read_body else {}), {}
        payload: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        reader = await request.multipart()
        async for part in reader:
            assert isinstance(part, BodyPartReader)
            if part.name == "payload_json":
                payload = json.loads(await part.text())
            else:
                files[part.filename or str(part.name)] = bytes(await part.read())
        return payload, files

    def _message(
        self,
        message_id: int,
        channel_id: int,
        payload: dict[str, Any],
        files: dict[str, bytes],
        author_id: int = BOT_ID,
    ) -> dict[str, Any]:
        attachments = [self._sent_file(channel_id, name, data) for name, data in files.items()]
        return {
            "id": str(message_id),
            "channel_id": str(channel_id),
            "guild_id": str(GUILD_ID),
            "author": user_payload(author_id, "pseudo-dalle", bot=True),
            "content": payload.get("content") or "",
            "timestamp": _now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": attachments,
            "embeds": payload.get("embeds", []),
            "pinned": False,
            "type": 0,
            "flags": payload.get("flags", 0),
            "components": payload.get("components", []),
        }

    def _sent_file(self, channel_id: int, name: str, data: bytes) -> dict[str, Any]:
        """A file the bot sent, as Discord describes it once it is on the CDN."""
        attachment_id = next(self.ids)
        path = f"/attachments/{channel_id}/{attachment_id}/{name}"
        self.cdn[path] = CdnFile(data)
        link = f"{self.base_url}{path}?{SIGNATURE}"
        attachment: dict[str, Any] = {
            "id": str(attachment_id),
            "filename": name,
            "size": len(data),
            "url": link,
            "proxy_url": link,
        }
        kind = mimetypes.guess_type(name.removeprefix("SPOILER_"))[0]
        if kind is not None:
            attachment["content_type"] = kind
        try:
            with Image.open(io.BytesIO(data)) as picture:
                attachment.update(width=picture.width, height=picture.height)
        except (UnidentifiedImageError, OSError):
            pass
        return attachment

    def _answered(
        self, interaction_id: int, payload: dict[str, Any], files: dict[str, bytes]
    ) -> dict[str, Any]:
        """The message answering an interaction, new or changed, kept so that its components
        can be used; ephemeral when the interaction's first answer said so."""
        first = (self.callbacks.get(interaction_id) or {}).get("data") or {}
        message_id = self.answers.get(interaction_id) or next(self.ids)
        message = self._message(
            message_id, CHANNEL_ID, {"flags": first.get("flags", 0), **payload}, files
        )
        kept = self.messages.get(message_id)
        if kept is not None and not files and "attachments" not in payload:
            message["attachments"] = kept["attachments"]
        self.messages[message_id] = message
        self.answers[interaction_id] = message_id
        return message

    def _oversized(self, files: dict[str, bytes]) -> web.Response | None:
        """Discord's answer to a message with a file over the upload limit, if it has one."""
        if all(len(data) <= self.upload_limit for data in files.values()):
            return None
        self.too_large.append({name: len(data) for name, data in files.items()})
        return _json({"code": 40005, "message": "Request entity too large"}, status=413)

    async def _hang(self) -> None:
        self.hung += 1
        async with self.changed:
            self.changed.notify_all()
        await asyncio.Event().wait()

    async def _create(self, request: web.Request) -> web.Response:
        if self.refuse_messages:
            return _json({"code": 50013, "message": "Missing Permissions"}, status=403)
        if self.hang_messages:
            await self._hang()
        channel_id = int(request.match_info["channel"])
        payload, files = await self._read(request)
        if refused := self._oversized(files):
            return refused
        message_id = next(self.ids)
        message = self._message(message_id, channel_id, payload, files)
        self.messages[message_id] = message
        await self._record(Event("create", channel_id, message_id, payload, files))
        return _json(message)

    async def _edit(self, request: web.Request) -> web.Response:
        if self.refuse_messages:
            return _json({"code": 50013, "message": "Missing Permissions"}, status=403)
        if self.hang_messages:
            await self._hang()
        channel_id, message_id = (
            int(request.match_info["channel"]),
            int(request.match_info["message"]),
        )
        if message_id not in self.messages:
            return _json({"code": 10008, "message": "Unknown Message"}, status=404)
        payload, files = await self._read(request)
        if refused := self._oversized(files):
            return refused
        message = self._message(message_id, channel_id, payload, files)
        self.messages[message_id] = message
        await self._record(Event("edit", channel_id, message_id, payload, files))
        return _json(message)

    async def _delete(self, request: web.Request) -> web.Response:
        channel_id, message_id = (
            int(request.match_info["channel"]),
            int(request.match_info["message"]),
        )
        self.messages.pop(message_id, None)
        await self._record(Event("delete", channel_id, message_id, {}, {}))
        return web.Response(status=204)

    async def _callback(self, request: web.Request) -> web.Response:
        interaction_id = int(request.match_info["id"])
        payload, files = await self._read(request)
        self.callbacks[interaction_id] = payload
        await self._record(Event("callback", None, interaction_id, payload, files))
        kind = payload.get("type")
        data = payload.get("data") or {}
        body: dict[str, Any] = {
            "interaction": {
                "id": str(interaction_id),
                "type": 2,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(data.get("flags", 0) & 64),
            },
            "resource": {"type": kind},
        }
        if kind == 4:
            body["resource"]["message"] = self._answered(interaction_id, data, files)
        elif kind == 7:  # the message whose component was used, changed
            message_id = self.pressed[interaction_id]
            changed = {
                **self.messages[message_id],
                **{k: v for k, v in data.items() if k != "attachments"},
            }
            if files or "attachments" in data:
                changed["attachments"] = [
                    self._sent_file(CHANNEL_ID, n, d) for n, d in files.items()
                ]
            self.messages[message_id] = changed
            body["resource"]["message"] = changed
        return _json(body)

    async def _original(self, request: web.Request) -> web.Response:
        payload, files = await self._read(request)
        interaction_id = _interaction_of(request)
        message = self._answered(interaction_id, payload, files)
        await self._record(Event("original", None, interaction_id, payload, files))
        return _json(message)

    async def _followup(self, request: web.Request) -> web.Response:
        payload, files = await self._read(request)
        await self._record(Event("followup", None, _interaction_of(request), payload, files))
        return _json(self._message(next(self.ids), CHANNEL_ID, payload, files))

    # -- gateway ------------------------------------------------------------------------
    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self.sockets.append(socket)
        await socket.send_json({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
        async for frame in socket:
            message = json.loads(frame.data)
            if message["op"] == 1:
                self.heartbeats.append(time.monotonic())
                await socket.send_json({"op": 11})
            elif message["op"] == 2:
                await self._dispatch(
                    socket,
                    "READY",
                    {
                        "v": 10,
                        "user": user_payload(BOT_ID, "pseudo-dalle", bot=True),
                        "guilds": [{"id": str(GUILD_ID), "unavailable": True}],
                        "session_id": "fake-session",
                        "resume_gateway_url": self.gateway_url,
                        "application": {"id": str(APP_ID), "flags": 0},
                        "private_channels": [],
                    },
                )
                await self._dispatch(socket, "GUILD_CREATE", self._guild())
                self.identified.set()
        self.sockets.remove(socket)
        return socket

    @staticmethod
    def _channel(channel_id: int) -> dict[str, Any]:
        if channel_id in THREADS:
            return {
                "id": str(channel_id),
                "type": 11,  # a public thread
                "guild_id": str(GUILD_ID),
                "parent_id": str(THREADS[channel_id]),
                "owner_id": str(ALICE.id),
                "name": "a thread",
                "last_message_id": None,
                "rate_limit_per_user": 0,
                "message_count": 0,
                "member_count": 1,
                "flags": 0,
                "thread_metadata": {
                    "archived": False,
                    "auto_archive_duration": 1440,
                    "archive_timestamp": _now(),
                    "locked": False,
                },
                "permissions": str(ADMIN_PERMISSIONS),
            }
        return {
            "id": str(channel_id),
            "type": 0,
            "position": 0,
            "permission_overwrites": [],
            "name": CHANNEL_NAMES.get(channel_id, "chat"),
            "guild_id": str(GUILD_ID),
            "nsfw": channel_id == AGE_RESTRICTED_ID,
            "parent_id": None,
            "permissions": str(ADMIN_PERMISSIONS),
        }

    async def _get_message(self, request: web.Request) -> web.Response:
        message = self.messages.get(int(request.match_info["message"]))
        if message is None:
            return _json({"code": 10008, "message": "Unknown Message"}, status=404)
        return _json(message)

    def _guild(self) -> dict[str, Any]:
        channels = [self._channel(c) for c in CHANNEL_NAMES]
        return {
            "id": str(GUILD_ID),
            "name": "Test Guild",
            "icon": None,
            "owner_id": "1",
            "roles": [
                {
                    "id": str(EVERYONE),
                    "name": "@everyone",
                    "permissions": str(MEMBER_PERMISSIONS),
                    "position": 0,
                    "color": 0,
                    "hoist": False,
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                },
                {
                    "id": str(TRUSTED),
                    "name": "trusted",
                    "permissions": str(MEMBER_PERMISSIONS),
                    "position": 1,
                    "color": 0,
                    "hoist": False,
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                },
            ],
            "channels": channels,
            "threads": [self._channel(thread) for thread in THREADS],
            "members": [],
            "member_count": 3,
            "emojis": [],
            "stickers": [],
            "features": [],
            "large": False,
            "unavailable": False,
            "joined_at": _now(),
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "premium_tier": 0,
            "preferred_locale": self.guild_locale,
            "nsfw_level": 0,
            "system_channel_flags": 0,
            "afk_timeout": 300,
        }

    async def _dispatch(
        self, socket: web.WebSocketResponse, name: str, data: dict[str, Any]
    ) -> None:
        self.sequence += 1
        await socket.send_json({"op": 0, "t": name, "s": self.sequence, "d": data})

    async def _interaction(
        self,
        member: Member,
        kind: int,
        data: dict[str, Any],
        channel_id: int,
        message: dict[str, Any] | None = None,
    ) -> int:
        interaction_id = next(self.ids)
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(APP_ID),
            "type": kind,
            "token": f"token-{interaction_id}",
            "version": 1,
            "guild_id": str(GUILD_ID),
            "channel_id": str(channel_id),
            "channel": self._channel(channel_id),
            "member": member.payload(),
            "app_permissions": str(ADMIN_PERMISSIONS),
            "locale": member.locale,
            "guild_locale": self.guild_locale,
            "entitlements": [],
            "attachment_size_limit": self.upload_limit,
            "authorizing_integration_owners": {"0": str(GUILD_ID)},
            "context": 0,
            "data": data,
        }
        if message is not None:
            payload["message"] = message
            self.pressed[interaction_id] = int(message["id"])
        await self._dispatch(self.sockets[-1], "INTERACTION_CREATE", payload)
        return interaction_id

    async def command(
        self,
        member: Member,
        name: str,
        /,
        channel_id: int = CHANNEL_ID,
        *,
        subcommand: str | None = None,
        **options: Any,
    ) -> int:
        """A member runs a slash command (or one of its `subcommand`s); returns the interaction
        id."""
        known = next(c for c in self.commands if c["name"] == name)
        declared = known.get("options", [])
        path = subcommand.split() if subcommand is not None else []  # "group sub" for a group
        for step in path:
            declared = next(o for o in declared if o["name"] == step).get("options", [])
        types = {o["name"]: o["type"] for o in declared}
        people = {k: v for k, v in options.items() if types[k] == 6}  # Members, as the tests pass
        options = {**options, **{k: str(v.id) for k, v in people.items()}}
        given = [{"name": k, "type": types[k], "value": v} for k, v in options.items()]
        data: dict[str, Any] = {
            "id": known["id"],
            "name": name,
            "type": 1,
            "options": _nested(path, given),
        }
        channels = {str(v): self._channel(int(v)) for k, v in options.items() if types[k] == 7}
        if channels:
            data["resolved"] = {"channels": channels}
        if people:
            resolved = data.setdefault("resolved", {})
            resolved["users"] = {str(m.id): user_payload(m.id, m.name) for m in people.values()}
            resolved["members"] = {
                str(m.id): {k: v for k, v in m.payload().items() if k != "user"}
                for m in people.values()
            }
        attachments = {v["id"]: v for k, v in options.items() if types[k] == 11}
        if attachments:
            data.setdefault("resolved", {})["attachments"] = attachments
            for option in data["options"]:
                if option["type"] == 11:
                    option["value"] = option["value"]["id"]
        return await self._interaction(member, 2, data, channel_id)

    async def context_menu(self, member: Member, name: str, message_id: int) -> int:
        """A member picks the message command `name` on a message; returns the interaction id."""
        known = next(c for c in self.commands if c["name"] == name and c.get("type") == 3)
        message = self.messages[message_id]
        data = {
            "id": known["id"],
            "name": name,
            "type": 3,
            "target_id": str(message_id),
            "resolved": {"messages": {str(message_id): message}},
        }
        return await self._interaction(member, 2, data, int(message["channel_id"]))

    async def modal(self, interaction_id: int) -> dict[str, Any]:
        """The form (modal) the bot opened in answer to an interaction."""

        def found() -> dict[str, Any] | None:
            payload = self.callbacks.get(interaction_id)
            return payload["data"] if payload and payload.get("type") == 9 else None

        return dict(await self.wait_for(found))

    async def submit(self, member: Member, interaction_id: int, **values: str) -> int:
        """A member fills in the form opened for `interaction_id` (text inputs and selects, by
        custom_id; the others keep their defaults) and sends it; returns the new interaction."""
        form = await self.modal(interaction_id)
        components = []
        for row in form["components"]:
            inner = row.get("component") or row["components"][0]
            custom_id = inner["custom_id"]
            if inner["type"] == 3:
                chosen = (
                    [values[custom_id]]
                    if custom_id in values
                    else [o["value"] for o in inner["options"] if o.get("default")]
                )
                answer: dict[str, Any] = {"type": 3, "custom_id": custom_id, "values": chosen}
            else:
                text = values.get(custom_id, inner.get("value") or "")
                answer = {"type": 4, "custom_id": custom_id, "value": text}
            components.append({"type": 18, "component": answer})
        data = {"custom_id": form["custom_id"], "components": components}
        return await self._interaction(member, 5, data, CHANNEL_ID)

    async def click(self, member: Member, message_id: int, custom_id: str) -> int:
        """A member presses a button on a message; returns the interaction id."""
        message = self.messages[message_id]
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._interaction(member, 3, data, int(message["channel_id"]), message)

    async def select(
        self, member: Member, message_id: int, custom_id: str, values: list[str]
    ) -> int:
        """A member picks `values` in a select menu on a message; returns the interaction id."""
        message = self.messages[message_id]
        data = {"custom_id": custom_id, "component_type": 3, "values": values}
        return await self._interaction(member, 3, data, int(message["channel_id"]), message)

    async def answer(self, interaction_id: int) -> dict[str, Any]:
        """The message that answered an interaction (sent with it, or after it was deferred),
        once it has content."""

        def found() -> dict[str, Any] | None:
            message = self.messages.get(self.answers.get(interaction_id, 0))
            if message is None or not (message["content"] or message["embeds"]):
                return None
            return message

        return dict(await self.wait_for(found))

    async def reply_to(self, interaction_id: int) -> str:
        """What the member saw in answer to an interaction (its callback or edited original)."""

        def found() -> str | None:
            for position, event in enumerate(self.events):
                if event.kind == "callback" and event.message_id == interaction_id:
                    data = event.payload.get("data") or {}
                    if event.payload.get("type") in (4, 7):
                        return _text(data)
                    later = [
                        e
                        for e in self.events[position + 1 :]
                        if e.kind in ("original", "followup") and e.message_id == interaction_id
                    ]
                    if event.payload.get("type") == 5 and later:
                        return _text(later[0].payload)
                    if event.payload.get("type") == 6:
                        return "(deferred update)"
            return None

        return str(await self.wait_for(found))


def _nested(path: list[str], given: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The options of a command as Discord nests them under its subcommand (type 1) and its
    subcommand group (type 2)."""
    if not path:
        return given
    kind = 1 if len(path) == 1 else 2
    return [{"name": path[0], "type": kind, "options": _nested(path[1:], given)}]


def _json(data: Any, status: int = 200) -> web.Response:
    """discord.py parses a body only when its content type is exactly application/json."""
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"}
    )


def _interaction_of(request: web.Request) -> int:
    return int(request.match_info["token"].removeprefix("token-"))


def _text(payload: dict[str, Any]) -> str:
    parts = [payload.get("content") or ""]
    for embed in payload.get("embeds") or []:
        parts += [embed.get("title", ""), embed.get("description", "")]
        parts += [f"{f['name']}: {f['value']}" for f in embed.get("fields", [])]
        if embed.get("footer"):
            parts.append(embed["footer"].get("text", ""))
    return "\n".join(p for p in parts if p)


def message_text(message: dict[str, Any] | Event) -> str:
    return _text(message.payload if isinstance(message, Event) else message)

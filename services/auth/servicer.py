"""The Auth gRPC servicer: translates protobuf messages to repository calls and back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from common.errors import item_status
from protos import auth_pb2, auth_pb2_grpc
from services.auth.errors import InvalidUserInput
from services.auth.repository import AuthRepository, UserRecord
from services.auth.revocations import CLOSED, RevocationHub
from services.auth.sessions import Session, SessionStore


def user_message(user: UserRecord) -> auth_pb2.User:
    return auth_pb2.User(
        id=user.id,
        username=user.username,
        email=user.email,
        is_admin=user.is_admin,
        disabled=user.disabled,
        key_prefix=user.key_prefix,
        created_at=user.created_at.isoformat(),
    )


def session_message(session: Session | None) -> auth_pb2.SessionResponse:
    if session is None:
        return auth_pb2.SessionResponse(valid=False)
    return auth_pb2.SessionResponse(valid=True, user=user_message(session.user), token=session.token,
                                    expires_at=session.expires_at.isoformat())


class AuthServicer(auth_pb2_grpc.AuthServicer):
    def __init__(self, repository: AuthRepository, revocations: RevocationHub | None = None,
                 sessions: SessionStore | None = None) -> None:
        self._repo = repository
        self._revocations = revocations
        self._sessions = sessions

    async def _resolve(self, request: auth_pb2.GetUserRequest) -> UserRecord:
        which = request.WhichOneof("ref")
        if which == "id":
            return await self._repo.get_user(user_id=request.id)
        if which == "username":
            return await self._repo.get_user(username=request.username)
        raise InvalidUserInput("id or username is required")

    async def CreateUser(
        self, request: auth_pb2.CreateUserRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.CreateUserResponse:
        user, key = await self._repo.create_user(request.username, request.email, request.is_admin)
        return auth_pb2.CreateUserResponse(user=user_message(user), api_key=key)

    async def CreateUsers(
        self, request: auth_pb2.CreateUsersRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.CreateUsersResponse:
        answers = await self._repo.create_users([(i.username, i.email, i.is_admin) for i in request.items])
        items = []
        for answer in answers:
            if isinstance(answer, tuple):
                user, key = answer
                items.append(auth_pb2.CreateUserOutcome(
                    response=auth_pb2.CreateUserResponse(user=user_message(user), api_key=key),
                    status=auth_pb2.ItemStatus(code=0)))
            else:
                items.append(auth_pb2.CreateUserOutcome(status=item_status(answer, auth_pb2.ItemStatus)))
        return auth_pb2.CreateUsersResponse(items=items)

    async def FindUsers(
        self, request: auth_pb2.FindUsersRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.FindUsersResponse:
        users = await self._repo.find_users(list(request.usernames), list(request.emails), list(request.ids))
        return auth_pb2.FindUsersResponse(users=[user_message(u) for u in users])

    async def ValidateKey(
        self, request: auth_pb2.ValidateKeyRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.ValidateKeyResponse:
        user = await self._repo.user_for_key(request.api_key)
        if user is None:
            return auth_pb2.ValidateKeyResponse(valid=False)
        return auth_pb2.ValidateKeyResponse(valid=True, user=user_message(user))

    async def GetUser(self, request: auth_pb2.GetUserRequest, context: grpc.aio.ServicerContext) -> auth_pb2.User:
        return user_message(await self._resolve(request))

    async def ListUsers(
        self, request: auth_pb2.ListUsersRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.ListUsersResponse:
        if request.page_size < 0 or request.after_id < 0:
            raise InvalidUserInput("page_size and after_id must not be negative")
        page_size = request.page_size or 50
        users = await self._repo.list_users(request.after_id, page_size, request.search)
        next_after = users[-1].id if len(users) == min(page_size, 500) and users else 0
        return auth_pb2.ListUsersResponse(users=[user_message(u) for u in users], next_after_id=next_after)

    def _session_store(self) -> SessionStore:
        if self._sessions is None:
            raise InvalidUserInput("web sessions are off")
        return self._sessions

    async def CreateSession(
        self, request: auth_pb2.CreateSessionRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.SessionResponse:
        return session_message(await self._session_store().create(request.api_key))

    async def ResolveSession(
        self, request: auth_pb2.SessionToken, context: grpc.aio.ServicerContext
    ) -> auth_pb2.SessionResponse:
        return session_message(await self._session_store().resolve(request.token))

    async def EndSession(
        self, request: auth_pb2.SessionToken, context: grpc.aio.ServicerContext
    ) -> auth_pb2.EndSessionResponse:
        return auth_pb2.EndSessionResponse(ended=await self._session_store().end(request.token))

    async def RotateKey(
        self, request: auth_pb2.GetUserRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.CreateUserResponse:
        """FAILED_PRECONDITION for the last enabled admin: its new key would exist only in this answer."""
        user = await self._resolve(request)
        user, key = await self._repo.rotate_key(user.id)
        return auth_pb2.CreateUserResponse(user=user_message(user), api_key=key)

    async def DisableUser(self, request: auth_pb2.GetUserRequest, context: grpc.aio.ServicerContext) -> auth_pb2.User:
        """FAILED_PRECONDITION for the last enabled admin: nobody could use the API afterwards."""
        user = await self._resolve(request)
        return user_message(await self._repo.set_disabled(user.id, True))

    async def EnableUser(self, request: auth_pb2.GetUserRequest, context: grpc.aio.ServicerContext) -> auth_pb2.User:
        user = await self._resolve(request)
        return user_message(await self._repo.set_disabled(user.id, False))

    async def WatchRevocations(
        self, request: auth_pb2.WatchRevocationsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[auth_pb2.Revocation]:
        if self._revocations is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "revocation streaming is off")
            return
        queue = self._revocations.subscribe()
        try:
            try:
                await asyncio.wait_for(self._revocations.wait_live(), 10)
            except TimeoutError:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "revocation listener is not connected")
            yield auth_pb2.Revocation(user_id=0)  # live: from here on no revocation is missed
            while True:
                user_id = await queue.get()
                if user_id == CLOSED:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "revocation listener lost")
                yield auth_pb2.Revocation(user_id=user_id)
        finally:
            self._revocations.unsubscribe(queue)

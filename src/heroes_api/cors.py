"""CORS (README, "Security"): off by default, so tutorial clients never notice."""

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Send


class Cors(CORSMiddleware):
    """Starlette's CORS for the API's methods and headers, except that a request from an origin
    not allowed gets no CORS header at all (Starlette's would still list methods and headers)."""

    def __init__(self, app: ASGIApp, origins: tuple[str, ...]) -> None:
        super().__init__(
            app,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "If-Match",
                "If-None-Match",
                "Idempotency-Key",
                "X-Request-ID",
            ],
            expose_headers=["Link", "X-Request-ID", "ETag", "Idempotent-Replayed", "Retry-After"],
        )

    def preflight_response(self, request_headers: Headers) -> Response:
        if not self.is_allowed_origin(request_headers["origin"]):
            return JSONResponse(
                {"detail": "Disallowed CORS origin"}, status_code=400, headers={"Vary": "Origin"}
            )
        response = super().preflight_response(request_headers)
        if response.status_code == 200:
            return response
        cors = {k: v for k, v in response.headers.items() if k.startswith("access-control-")}
        return JSONResponse({"detail": bytes(response.body).decode()}, 400, headers=cors)

    async def send(self, message: Message, send: Send, request_headers: Headers) -> None:
        origin = request_headers.get("origin")
        if origin is None or self.is_allowed_origin(origin):
            await super().send(message, send, request_headers)
            return
        if message["type"] == "http.response.start":
            MutableHeaders(scope=message).add_vary_header("Origin")
        await send(message)

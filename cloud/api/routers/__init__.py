"""Thin routers: parse, authorize, call one service method, return its result."""

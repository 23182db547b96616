"""The control protocol, defined once: commands, messages, codec, error codes.

Pure: no sockets. Shared by circusd, circusctl, the client library, circusmeta and the web side.
"""
from circus.protocol.commands import COMMANDS, MATCH_KINDS, Command, Prop, Role, get_command, validate_properties
from circus.protocol.errors import Errno, ErrorCode, ProtocolError
from circus.protocol.messages import (MAX_FRAME, BadRequest, Request, decode, decode_event, decode_request,
                                      encode, encode_event, error_reply, make_request, ok_reply,
                                      output_topic, read_event, topic_name)

__all__ = [
    "COMMANDS", "MATCH_KINDS", "Command", "Prop", "Role", "get_command", "validate_properties",
    "Errno", "ErrorCode", "ProtocolError",
    "MAX_FRAME", "BadRequest", "Request", "decode", "decode_event", "decode_request", "encode",
    "encode_event", "error_reply", "make_request", "ok_reply", "output_topic", "read_event",
    "topic_name",
]

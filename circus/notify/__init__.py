"""Notifications: ``[notify:NAME]`` sections turn watcher events and output lines into messages.

``spec`` (what the configuration means) and ``rules`` (matching and throttling, with the clock
passed in) are pure; ``senders`` delivers one message (smtp, exec, webhook) and ``service`` runs it
all inside circusd without ever blocking its loop.
"""

"""circushttpd, the web dashboard: a tornado + jinja2 application that is only a client of the
control protocol and of the stats and events streams, for one node or a pool.

Imported only by ``circushttpd`` (:mod:`circus.cli.httpd`); tornado and jinja2 are the optional
``web`` extra, so nothing else in Circus imports this package.

- :mod:`.users` — the users file (scrypt-hashed passwords, roles, API tokens), the cookie secret
- :mod:`.files` — reading the files circushttpd trusts, writing them privately
- :mod:`.auth` — sessions, tokens, the client's address
- :mod:`.throttle` — failed logins per (name, address), per address and per name
- :mod:`.hashing` — password checks in a small thread pool, logins in progress bounded
- :mod:`.revocations` — logged-out sessions, kept across restarts
- :mod:`.redirects` — where a redirect may go (a path of this site only)
- :mod:`.headers` — the security headers of every response (CSP and the others)
- :mod:`.nodes` — the pool (or the one node) and the views the pages show
- :mod:`.live` — the stats and events subscriptions, kept in bounded memory, pushed to pages
- :mod:`.words` — watcher events in an operator's words (event lists, progress lines)
- :mod:`.badges` — how states show: a badge's word and tone from circusd's ``trouble``; a
  node's health
- :mod:`.banners` — what an action's reply means, as the banner shown after it
- :mod:`.watchers` — the pool's watchers as one: a row per watcher name across the nodes (pure)
- :mod:`.poolview` — each node's watchers, kept fresh on the server while a page looks
- :mod:`.jobs` — pool-wide operations as jobs: each node's progress, the banner at the end
- :mod:`.poolactions` — running them with circusmeta (``run_rolling``, ``Pool.add``)
- :mod:`.poolpages` — the watchers page, its forms and a job's page
- :mod:`.poolapi` — ``/api/watchers``, ``/api/rolling``, ``/api/add``, ``/api/jobs``, ``/ws/pool``
- :mod:`.handlers` — the HTML pages and the action forms
- :mod:`.api` — ``/api/``, ``/metrics``, the WebSocket
- :mod:`.metrics` — the pool's Prometheus text
- :mod:`.app` — routes and settings
"""

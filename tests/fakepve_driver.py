# Slipway test driver for fakepve.
#
# Copyright (C) the Slipway contributors
#
# This program is free software: you can redistribute it and/or modify it
# under the terms of the GNU Affero General Public License as published by the
# Free Software Foundation, either version 3 of the License, or (at your
# option) any later version.
#
# This program is distributed in the hope that it will be useful, but WITHOUT
# ANY WARRANTY; without even the implied warranty of MERCHANTABILITY or
# FITNESS FOR A PARTICULAR PURPOSE. See the GNU Affero General Public License
# for more details.
#
# You should have received a copy of the GNU Affero General Public License
# along with this program. If not, see <https://www.gnu.org/licenses/>.
#
# SPDX-License-Identifier: AGPL-3.0-or-later
#
# This file imports fakepve (AGPL-3.0), a fake Proxmox VE API; it is a test
# tool only and is not part of the Slipway binary.
"""Serve a fakepve for Slipway's integration tests, with a control API.

    python tests/fakepve_driver.py [--time-scale S] [--ct-secs N] [--dir DIR]

--time-scale: real seconds per PVE second (default 0: every task has finished
when its POST returns). --ct-secs: PVE seconds of every container task, or
create=2,destroy=1 (see pve.ct_secs). --ignore-stdin: for running by hand.

Prints ONE JSON line on stdout, then serves until stdin reaches EOF or a
SIGTERM/SIGINT arrives:

    {"url": "https://127.0.0.1:PORT", "control": "http://127.0.0.1:CPORT",
     "ca": "/abs/fakepve.crt", "token_id": "root@pam!slipway", "token_secret": "..."}

Use `url` with header `Authorization: PVEAPIToken=<token_id>=<token_secret>`
and `ca` as the only trusted CA. The control API (plain HTTP, JSON in and out;
any error is HTTP 400 {"error": "..."}):

  POST /call            {"method": NAME, "args": [...], "kwargs": {...}}
                        -> {"result": ...}   pve.NAME(*args, **kwargs), NAME from CALLS
  POST /set             {"attr": NAME, "value": V} -> {"result": <new value>}; NAME from SETTABLE.
                        ct_secs takes a number (every container task) or {"create": 2, ...};
                        network and ceph take a dict that is merged in.
  POST /token           {"id": "user@realm!name", "secret": "..."} (secret optional: one is made)
                        -> {"result": {"id", "secret"}}
  POST /user            {"userid": "alice@pve", "password": "..."}: a password (ticket) login.
                        Tokens need no user: any "user@realm!name" in /token works.
  POST /guest           {"vmid": N, "set": {ATTR: V}}: per-guest scenario attributes
                        (start_secs, stop_secs, shutdown_secs, start_error, ha_state, status, stats, ...)
  POST /storage         {"storage": NAME, "set": {"active": 0, "avail": 0, ...}}; a missing storage is created.
  POST /failures/clear  forget every pve.fail() rule.   GET /failures: the rules.
  GET  /guests          every VM and container (see guest_view)
  GET  /tasks           every task with its log
  GET  /requests        every API request: method, path, query, body, params, auth, time
  POST /requests/clear  empty that log
  GET  /connections     {"result": N}: connections the API has accepted (TLS handshakes)
  GET  /health          {"ok": true}

HA: fakepve 0.5.0 only synthesises /cluster/ha/resources answers; this
driver makes GET/POST /cluster/ha/resources and GET/PUT/DELETE
/cluster/ha/resources/{sid} stateful (see DriverHa): a guest is an HA
resource while its ha_state is set, which also makes fakepve route its
start/shutdown/stop through HA and refuse a destroy without purge=1.

DHCP: fakepve 0.5.0 reports no address for a container whose netN says
ip=dhcp. `/set dhcp {"subnet": "10.77.0.0/24"}` starts a DHCP server on the
bridge: a running container's first ip=dhcp interface then reports a lease
from the subnet (the same one for the same VMID), and the guest attribute
dhcp_lease ("10.77.0.40/24") gives it another lease, as a renewal would.

Privileges: fakepve lets everyone do everything until the first `grant`
(/call grant ["user@realm", "/path", "Priv", ...]); after it only granted
privileges count. root@pam (and every root@pam!token) always has everything,
so a test of restricted privileges must use a token of another user, seeded
with /token, e.g. {"id": "slipway@pve!bot"}, and grant to "slipway@pve" (a
grant to the user covers its tokens) or to the token id itself.
"""

import argparse
import asyncio
import hashlib
import inspect
import ipaddress
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

from aiohttp import web, web_protocol

import fakepve
from fakepve import server as pve_server
from fakepve.certs import make_cert

HOST = '127.0.0.1'
TOKEN_ID = 'root@pam!slipway'

# pve methods /call may run.
CALLS = frozenset((
    # faults
    'fail', 'errors_for', 'flaky_network', 'slow_network', 'hold_config_lock', 'release_config_lock',
    'snapshot_lock', 'unlock', 'set_node_offline', 'lose_quorum', 'regain_quorum', 'revoke_tickets',
    'ceph_slow', 'ceph_down', 'ceph_recover', 'add_ceph_storage',
    # permissions
    'grant',
    # inventory and long-running work
    'add_ct', 'add_vm', 'add_node', 'store_file', 'backup', 'migrate',
))
# pve attributes /set may change.
SETTABLE = frozenset((
    'time_scale', 'latency', 'lock_wait', 'ct_secs', 'shutdown_default_timeout', 'ha_delay', 'quorate',
    'ticket_ttl', 'tfa', 'body_timeout', 'max_requests', 'network', 'ceph', 'monitor_allowed',
    'refuse_terminal', 'dhcp',
))
# Guest attributes /guest may change.
GUEST_ATTRS = frozenset((
    'start_secs', 'stop_secs', 'shutdown_secs', 'start_error', 'ha_state', 'status', 'stats', 'checkpoint',
    'acpi', 'agent', 'agent_hangs', 'node', 'pool', 'dhcp_lease',
))
SECRET_KEYS = frozenset(pve_server.SECRET_KEYS)


class ControlError(Exception):
    """A bad control request; answered with 400."""


def json_safe(value):
    """value with sets, tuples, bytes and objects turned into JSON types."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return dict((str(k), json_safe(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((json_safe(v) for v in value), key=repr)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode('utf-8', 'replace')
    if isinstance(value, (fakepve.FakeCt, fakepve.FakeVm)):
        return guest_view(value)
    return repr(value)


def sha1_hex(text):
    return hashlib.sha1(text.encode()).hexdigest()


def guest_view(guest):
    is_ct = isinstance(guest, fakepve.FakeCt)
    return json_safe({
        'vmid': guest.vmid, 'node': guest.node, 'type': 'lxc' if is_ct else 'qemu', 'status': guest.status,
        'name': guest.name, 'lock': guest.lock, 'config': guest.config, 'pending': guest.pending,
        'snapshots': list(guest.snapshots), 'ha_state': guest.ha_state, 'template': bool(guest.template),
        'pool': guest.pool, 'config_lock_held': guest.lock_holder is not None,
        'ha': getattr(guest, 'ha_meta', None) if guest.ha_state is not None else None,
    })


# HA resource options kept as given (PVE's resources.cfg keys).
HA_OPTIONS = ('comment', 'max_restart', 'max_relocate', 'failback', 'auto-rebalance', 'group')


class DriverHa(object):
    """Stateful /cluster/ha/resources (fakepve 0.5.0 only synthesises answers there).

    A guest is an HA resource while its ha_state is set (so a guest added with ha_state, or created with
    ha-managed=1, is one too, and a destroy with purge=1 removes it). The options given are kept in
    guest.ha_meta. Wording from pve-ha-manager (API2/HA/Resources.pm, HA/Config.pm, Resources/PVECT.pm).
    The HA manager's reaction is emulated: after ha_delay PVE seconds a resource requested 'started'
    is started and one requested 'stopped' or 'disabled' is stopped.
    """

    def _routes_driver_ha(self):
        return [('GET', '/cluster/ha/resources', self._ha_index),
                ('POST', '/cluster/ha/resources', self._ha_create),
                ('GET', '/cluster/ha/resources/{sid}', self._ha_read),
                ('PUT', '/cluster/ha/resources/{sid}', self._ha_update),
                ('DELETE', '/cluster/ha/resources/{sid}', self._ha_delete)]

    def _ha_parse_sid(self, sid):
        """HA::Config::parse_sid: (sid, type, vmid)."""
        sid = str(sid)
        if sid.isdigit():
            guest = self.guest(int(sid))
            if guest is None:
                raise fakepve.PveError(500, 'unable to detect SID from VMID - VM/CT {0} does not exist'.format(sid))
            kind = 'ct' if isinstance(guest, fakepve.FakeCt) else 'vm'
            return '{0}:{1}'.format(kind, sid), kind, int(sid)
        kind, colon, name = sid.partition(':')
        if not colon or not kind or not name or any(c.isspace() for c in sid):
            raise fakepve.PveError(500, "unable to parse service id '{0}'".format(sid))
        if kind not in ('ct', 'vm'):
            raise fakepve.PveError(500, "unknown PVE resource type '{0}'".format(kind))
        if not name.isdigit():
            raise fakepve.PveError(500, "invalid VMID '{0}'".format(name))
        return sid, kind, int(name)

    def _ha_guests(self):
        return [g for g in list(self.vms) + list(self.cts) if g.ha_state is not None]

    @staticmethod
    def _ha_sid(guest):
        return '{0}:{1}'.format('ct' if isinstance(guest, fakepve.FakeCt) else 'vm', guest.vmid)

    def _ha_entry(self, guest):
        # ha_state is the truth: fakepve's own HA paths (start/shutdown/stop of an HA guest) change it.
        meta = dict(getattr(guest, 'ha_meta', None) or {})
        entry = {'sid': self._ha_sid(guest), 'type': self._ha_sid(guest).split(':')[0], 'state': guest.ha_state}
        entry.update(meta)
        entry['digest'] = sha1_hex(repr(sorted(
            (self._ha_sid(g), g.ha_state, sorted((getattr(g, 'ha_meta', None) or {}).items()))
            for g in self._ha_guests())))
        return entry

    def _ha_find(self, sid):
        sid, kind, vmid = self._ha_parse_sid(sid)
        guest = self.guest(vmid)
        if guest is None or guest.ha_state is None:
            return sid, None
        return sid, guest

    async def _ha_index(self, v, user):
        out = [self._ha_entry(g) for g in self._ha_guests()]
        if v.get('type'):
            out = [e for e in out if e['type'] == v['type']]
        return sorted(out, key=lambda e: e['sid'])

    async def _ha_read(self, v, user):
        sid, guest = self._ha_find(v['sid'])
        if guest is None:
            raise fakepve.PveError(500, "no such resource '{0}'".format(sid))
        return self._ha_entry(guest)

    def _ha_request(self, guest, state):
        """The CRM/LRM acting on the requested state, ha_delay PVE seconds later."""
        guest.ha_state = 'started' if state == 'enabled' else state

        async def later():
            await self.pause(self.ha_delay)
            if guest.ha_state is None:
                return
            is_ct = isinstance(guest, fakepve.FakeCt)
            if guest.ha_state == 'started' and guest.status != 'running':
                if is_ct:
                    self._apply(guest)
                    guest.pid = next(self._ct_pids)
                else:
                    guest.apply_pending()
                    guest.qmpstatus = 'running'
                guest.status = 'running'
                guest.started_at = time.time()
            elif guest.ha_state in ('stopped', 'disabled') and guest.status == 'running':
                guest.status = 'stopped'
                if is_ct:
                    guest.pid = None
                else:
                    guest.qmpstatus = 'stopped'
        if self.time_scale:
            asyncio.ensure_future(later())
            return None
        return later()

    async def _ha_create(self, v, user):
        self.need_quorum()
        sid, kind, vmid = self._ha_parse_sid(v['sid'])
        if v.get('type') and v['type'] != kind:
            raise fakepve.PveError(500, 'types does not match')
        if v.get('group'):
            raise fakepve.PveError(500, "invalid parameter 'group': ha groups have been migrated to rules")
        guest = self.guest(vmid)
        if guest is None:
            raise fakepve.PveError(500, "resource '{0}' does not exist in cluster".format(sid))
        if guest.ha_state is not None:
            raise fakepve.PveError(500, "resource ID '{0}' already defined".format(sid))
        guest.ha_meta = dict((k, v[k]) for k in HA_OPTIONS if v.get(k) is not None)
        pending = self._ha_request(guest, v.get('state') or 'started')
        if pending is not None:
            await pending
        return None

    async def _ha_update(self, v, user):
        self.need_quorum()
        sid, guest = self._ha_find(v['sid'])
        if guest is None:
            raise fakepve.PveError(500, "no such resource '{0}'".format(sid))
        if v.get('group'):
            raise fakepve.PveError(500, "invalid parameter 'group': ha groups have been migrated to rules")
        meta = dict(getattr(guest, 'ha_meta', None) or {})
        for key in [k for k in str(v.get('delete') or '').replace(';', ',').split(',') if k.strip()]:
            key = key.strip()
            if key not in HA_OPTIONS + ('state',):
                raise fakepve.PveError(500, "no such option '{0}'".format(key))
            meta.pop(key, None)
        meta.update((k, v[k]) for k in HA_OPTIONS if v.get(k) is not None)
        guest.ha_meta = meta
        state = v.get('state')
        if state is None and 'state' in [k.strip() for k in str(v.get('delete') or '').replace(';', ',').split(',')]:
            state = 'started'  # the default
        if state is not None:
            pending = self._ha_request(guest, state)
            if pending is not None:
                await pending
        return None

    async def _ha_delete(self, v, user):
        self.need_quorum()
        sid, guest = self._ha_find(v['sid'])
        if guest is None:
            raise fakepve.PveError(500, "cannot delete service '{0}', not HA managed!".format(sid))
        guest.ha_state = None
        guest.ha_meta = {}
        return None


class DriverPve(DriverHa, fakepve.FakePve):
    """FakePve with a richer request log (query string, params, auth, time) and stateful HA resources."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.request_log = []
        # A DHCP server on the bridge (fakepve 0.5.0 reports no address for ip=dhcp):
        # off until /set dhcp {"subnet": "10.77.0.0/24"}; a guest's dhcp_lease overrides.
        self.dhcp = {'subnet': None}

    def dhcp_lease(self, ct):
        """The CIDR a running container's ip=dhcp interface has leased, or None."""
        lease = getattr(ct, 'dhcp_lease', None)
        if lease:
            return lease
        if not self.dhcp.get('subnet'):
            return None
        net = ipaddress.ip_network(self.dhcp['subnet'])
        hosts = net.num_addresses - 3
        return '{0}/{1}'.format(net.network_address + 2 + ct.vmid % hosts, net.prefixlen)

    async def _lxc_interfaces(self, user, v):
        out = await super()._lxc_interfaces(user, v)
        if not out:
            return out
        ct = self._find_ct(v['node'], v['vmid'])
        lease = self.dhcp_lease(ct)
        dhcp = [k for k in sorted(ct.config) if re.fullmatch(r'net\d+', k)
                and 'ip=dhcp' in ct.config[k].split(',')]
        if lease and dhcp:
            name = dict(p.split('=', 1) for p in ct.config[dhcp[0]].split(',') if '=' in p).get('name', 'eth0')
            for item in out:
                if item['name'] == name:
                    address, prefix = lease.split('/', 1)
                    item['inet'] = lease
                    item['ip-addresses'].append({'ip-address-type': 'inet', 'ip-address': address,
                                                 'prefix': prefix})
        return out

    def _record(self, request, body):
        super()._record(request, body)
        redacted = pve_server.redact(body, request.content_type)
        query = pve_server.collect(request.query.items())
        query = dict((k, '***' if k in SECRET_KEYS else v) for k, v in query.items())
        params = dict(query)
        text = redacted.decode('utf-8', 'replace')
        if text:
            try:
                if request.content_type == 'application/json':
                    data = json.loads(text)
                    if isinstance(data, dict):
                        params.update(data)
                elif request.content_type != 'multipart/form-data':
                    params.update(pve_server.collect(urllib.parse.parse_qsl(text, keep_blank_values=True)))
            except ValueError:
                pass
        auth = request.headers.get('Authorization', '')
        if auth.startswith('PVEAPIToken='):
            who = auth[len('PVEAPIToken='):].partition('=')[0]
        elif request.cookies.get('PVEAuthCookie'):
            who = 'ticket'
        else:
            who = None
        self.request_log.append({'method': request.method, 'path': request.path, 'query': query,
                                 'body': text, 'params': params, 'auth': who, 'time': time.time()})
        excess = len(self.request_log) - self.max_requests
        if excess > 0:
            del self.request_log[:excess]


# Connections the API port accepted: each is a TLS handshake, a large part of
# a request's cost in Python, so a client that reuses fewer costs more.
API_CONNECTIONS = {'port': None, 'count': 0}
_connection_made = web_protocol.RequestHandler.connection_made


def _count_connection(self, transport):
    sockname = transport.get_extra_info('sockname')
    if sockname and sockname[1] == API_CONNECTIONS['port']:
        API_CONNECTIONS['count'] += 1
    return _connection_made(self, transport)


web_protocol.RequestHandler.connection_made = _count_connection


class Control(object):
    def __init__(self, pve):
        self.pve = pve

    def app(self):
        app = web.Application(middlewares=[self._errors])
        r = app.router
        r.add_post('/call', self.call)
        r.add_post('/set', self.set_attr)
        r.add_post('/token', self.token)
        r.add_post('/user', self.user)
        r.add_post('/guest', self.guest)
        r.add_post('/storage', self.storage)
        r.add_get('/failures', self.failures)
        r.add_post('/failures/clear', self.failures_clear)
        r.add_get('/guests', self.guests)
        r.add_post('/guests/forget', self.guests_forget)
        r.add_get('/tasks', self.tasks)
        r.add_get('/requests', self.requests)
        r.add_post('/requests/clear', self.requests_clear)
        r.add_get('/connections', self.connections)
        r.add_get('/health', self.health)
        return app

    @web.middleware
    async def _errors(self, request, handler):
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception as exc:  # noqa: BLE001 - every scenario error goes back to the test
            return web.json_response({'error': '{0}: {1}'.format(type(exc).__name__, exc)
                                      if not isinstance(exc, ControlError) else str(exc)}, status=400)

    @staticmethod
    async def _body(request):
        if not request.can_read_body:
            return {}
        try:
            data = await request.json()
        except ValueError as exc:
            raise ControlError('request body is not JSON: {0}'.format(exc)) from None
        if not isinstance(data, dict):
            raise ControlError('request body must be a JSON object')
        return data

    @staticmethod
    def _answer(result):
        return web.json_response({'result': json_safe(result)})

    def _guest(self, vmid):
        try:
            guest = self.pve.guest(int(vmid))
        except (TypeError, ValueError):
            raise ControlError('vmid must be an integer') from None
        if guest is None:
            raise ControlError('no guest {0}'.format(vmid))
        return guest

    async def call(self, request):
        data = await self._body(request)
        name = data.get('method')
        if name not in CALLS:
            raise ControlError('method {0!r} is not callable; one of: {1}'.format(name, ', '.join(sorted(CALLS))))
        args, kwargs = data.get('args') or [], data.get('kwargs') or {}
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ControlError('args must be a list and kwargs an object')
        result = getattr(self.pve, name)(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        await pve_server.settle()
        return self._answer(result)

    async def set_attr(self, request):
        data = await self._body(request)
        name, value = data.get('attr'), data.get('value')
        if name not in SETTABLE:
            raise ControlError('attribute {0!r} is not settable; one of: {1}'.format(
                name, ', '.join(sorted(SETTABLE))))
        pve = self.pve
        if name == 'ct_secs':
            if isinstance(value, dict):
                unknown = set(value) - set(pve.ct_secs)
                if unknown:
                    raise ControlError('unknown ct_secs keys {0}; known: {1}'.format(
                        sorted(unknown), ', '.join(sorted(pve.ct_secs))))
                pve.ct_secs.update((k, float(v)) for k, v in value.items())
            else:
                pve.ct_secs = dict.fromkeys(pve.ct_secs, float(value))
            return self._answer(pve.ct_secs)
        if name in ('network', 'ceph', 'dhcp'):
            if not isinstance(value, dict):
                raise ControlError('{0} takes an object'.format(name))
            current = getattr(pve, name)
            unknown = set(value) - set(current)
            if unknown:
                raise ControlError('unknown {0} keys {1}'.format(name, sorted(unknown)))
            current.update(value)
            return self._answer(current)
        if name == 'latency':
            # Model.latency is not read by fakepve 0.5.0; the middleware uses network['latency'].
            pve.network['latency'] = float(value)
        old = getattr(pve, name)
        if isinstance(old, bool):
            value = bool(value)
        elif isinstance(old, (int, float)) and not isinstance(value, (int, float)):
            raise ControlError('{0} takes a number'.format(name))
        setattr(pve, name, value)
        return self._answer(getattr(pve, name))

    async def token(self, request):
        data = await self._body(request)
        tokenid = data.get('id')
        if not isinstance(tokenid, str) or '@' not in tokenid or '!' not in tokenid:
            raise ControlError('id must look like user@realm!name')
        secret = data.get('secret') or str(uuid.uuid4())
        self.pve.apitokens[tokenid] = str(secret)
        return self._answer({'id': tokenid, 'secret': str(secret)})

    async def user(self, request):
        data = await self._body(request)
        userid, password = data.get('userid'), data.get('password')
        if not isinstance(userid, str) or '@' not in userid or '!' in userid:
            raise ControlError('userid must look like user@realm')
        if not isinstance(password, str) or not password:
            raise ControlError('password is required')
        self.pve.users[userid] = password
        return self._answer({'userid': userid})

    async def guest(self, request):
        data = await self._body(request)
        guest = self._guest(data.get('vmid'))
        changes = data.get('set') or {}
        if not isinstance(changes, dict):
            raise ControlError('set must be an object')
        unknown = set(changes) - GUEST_ATTRS
        if unknown:
            raise ControlError('guest attributes {0} are not settable; one of: {1}'.format(
                sorted(unknown), ', '.join(sorted(GUEST_ATTRS))))
        for key, value in changes.items():
            if key == 'status':
                if value not in ('running', 'stopped'):
                    raise ControlError('status must be running or stopped')
                guest.status = value
                guest.started_at = time.time() if value == 'running' else None
                if isinstance(guest, fakepve.FakeCt):
                    guest.pid = next(self.pve._ct_pids) if value == 'running' else None
                else:
                    guest.qmpstatus = value
            elif key == 'stats':
                guest.stats.update(value or {})
            else:
                setattr(guest, key, value)
        return self._answer(guest_view(guest))

    async def storage(self, request):
        data = await self._body(request)
        name = data.get('storage')
        if not isinstance(name, str) or not name:
            raise ControlError('storage is required')
        changes = data.get('set') or {}
        if not isinstance(changes, dict):
            raise ControlError('set must be an object')
        store = self.pve.storages.setdefault(name, {'type': 'dir', 'active': 1, 'content': 'images,rootdir',
                                                    'files': set(), 'path': '/mnt/' + name})
        store.update(changes)
        return self._answer(store)

    async def failures(self, request):
        return self._answer([{'method': m, 'suffix': s, **rule} for (m, s), rule in self.pve.failures.items()])

    async def failures_clear(self, request):
        self.pve.failures.clear()
        return self._answer(None)

    async def guests(self, request):
        return web.json_response([guest_view(g) for g in list(self.pve.vms) + list(self.pve.cts)])

    async def guests_forget(self, request):
        """Drops the guests with ids in [from, to] and every finished task, as
        if the cluster had never held them (the benchmarks start each phase
        from the same cluster this way; fakepve's lookups grow with both)."""
        body = await self._body(request)
        low, high = int(body['from']), int(body['to'])
        keep = lambda g: not (low <= g.vmid <= high)
        self.pve.vms[:] = [g for g in self.pve.vms if keep(g)]
        self.pve.cts[:] = [g for g in self.pve.cts if keep(g)]
        done = [upid for upid, t in self.pve.tasks.items() if t.get('status') != 'running']
        for upid in done:
            del self.pve.tasks[upid]
        self.pve.tasklog[:] = [t for t in self.pve.tasklog if t.get('status') == 'running']
        return self._answer(len(done))

    async def tasks(self, request):
        return web.json_response(json_safe(self.pve.tasklog))

    async def requests(self, request):
        return web.json_response(json_safe(self.pve.request_log))

    async def requests_clear(self, request):
        del self.pve.request_log[:]
        del self.pve.requests[:]
        return self._answer(None)

    async def connections(self, request):
        return self._answer(API_CONNECTIONS['count'])

    async def health(self, request):
        return web.json_response({'ok': True})


def parse_ct_secs(text):
    """'N' for every container task, or 'create=2,destroy=1'."""
    if '=' not in text:
        return float(text)
    out = {}
    for part in text.split(','):
        key, _, val = part.partition('=')
        out[key.strip()] = float(val)
    return out


class _QuietDrops(logging.Filter):
    """Hide aiohttp's traceback for the connections flaky_network drops on purpose."""

    def filter(self, record):
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, ConnectionResetError) and 'fakepve: connection dropped' in str(exc))


def watch_stdin(loop, stop):
    """Set stop when stdin reaches EOF (the parent went away)."""
    def run():
        try:
            while os.read(0, 65536):
                pass
        except OSError:
            pass
        loop.call_soon_threadsafe(stop.set)
    threading.Thread(target=run, name='stdin-watch', daemon=True).start()


async def serve(args):
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tmp = None
    if args.dir:
        certdir = os.path.abspath(args.dir)
        os.makedirs(certdir, exist_ok=True)
    else:
        certdir = tmp = tempfile.mkdtemp(prefix='slipway-fakepve-')
    control_runner = None
    pve = DriverPve(host=HOST, port=0)
    try:
        certfile, keyfile, _ = make_cert(certdir, hosts=(HOST,))
        pve.time_scale = args.time_scale
        if args.ct_secs is not None:
            if isinstance(args.ct_secs, dict):
                unknown = set(args.ct_secs) - set(pve.ct_secs)
                if unknown:
                    raise SystemExit('fakepve_driver: unknown --ct-secs keys {0}'.format(sorted(unknown)))
                pve.ct_secs.update(args.ct_secs)
            else:
                pve.ct_secs = dict.fromkeys(pve.ct_secs, args.ct_secs)
        secret = str(uuid.uuid4())
        pve.apitokens[TOKEN_ID] = secret
        await pve.start(certfile, keyfile)
        API_CONNECTIONS['port'] = int(pve.url.rsplit(':', 1)[1])
        control_runner = web.AppRunner(Control(pve).app(), access_log=None)
        await control_runner.setup()
        site = web.TCPSite(control_runner, HOST, 0)
        await site.start()
        cport = control_runner.addresses[0][1]
        sys.stdout.write(json.dumps({'url': pve.url, 'control': 'http://{0}:{1}'.format(HOST, cport),
                                     'ca': os.path.abspath(certfile), 'token_id': TOKEN_ID,
                                     'token_secret': secret}) + '\n')
        sys.stdout.flush()
        if not args.ignore_stdin:
            watch_stdin(loop, stop)
        await stop.wait()
    finally:
        if control_runner is not None:
            await control_runner.cleanup()
        await pve_server.settle()
        await pve.stop()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description='fakepve with a control API for Slipway tests')
    parser.add_argument('--time-scale', type=float, default=0.0,
                        help='real seconds per PVE second; 0 (default) finishes tasks before the request returns')
    parser.add_argument('--ct-secs', type=parse_ct_secs, default=None,
                        help='PVE seconds every container task takes (create, clone, destroy, snapshot, '
                             'delsnapshot, rollback, template, resize, migrate), or KEY=N,KEY=N')
    parser.add_argument('--dir', help='where to write fakepve.crt and fakepve.key (default: a temp dir, removed '
                                      'at exit)')
    parser.add_argument('--ignore-stdin', action='store_true',
                        help='do not exit at EOF on stdin (for running by hand); stop with SIGTERM')
    args = parser.parse_args()
    logging.getLogger('aiohttp.server').addFilter(_QuietDrops())
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == '__main__':
    main()

#!/usr/bin/env python3
"""Images in: oci:, oci-archive: and docker-archive: sources made by tools that are not
kiln (buildah for the base layer, skopeo for the conversions; a second layer with
whiteouts written by Python's tarfile, as a Dockerfile's `RUN rm` would make it).
Each layer is stored once as STATE/layers/<diff_id>, verified against both of its
digests, stacked under the builder's overlay (ID-mapped for a user who is not root);
the image config becomes the builder's; a second builder copies nothing."""
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_testlib as kt  # noqa: E402

ENTRIES_LIMIT = 4000
LAYERS_LIMIT = 6


def setUpModule():
    kt.setup_module(f'[Limits]\nEntriesPerLayer={ENTRIES_LIMIT}\nLayersPerImage={LAYERS_LIMIT}\n')
    global IMAGES
    IMAGES = make_images(kt.ENV)


tearDownModule = kt.teardown_module
IMAGES = None
INVALID = 'org.kiln.Builder1.Error.InvalidArgument'
LIMIT = 'org.kiln.Builder1.Error.LimitExceeded'
DENIED = 'org.freedesktop.DBus.Error.AccessDenied'


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def put_blob(layout, data):
    digest = sha256(data)
    with open(os.path.join(layout, 'blobs', 'sha256', digest), 'wb') as f:
        f.write(data)
    return digest


def read_blob(layout, digest):
    with open(os.path.join(layout, 'blobs', 'sha256', digest.split(':', 1)[1]), 'rb') as f:
        return f.read()


def tar_bytes(entries):
    """An uncompressed layer tar: entries are (name, content or None for a directory)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT) as t:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            if content is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                t.addfile(info)
            else:
                info.mode = 0o644
                info.size = len(content)
                t.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def add_layer(layout, from_ref, to_ref, layer, history='test layer', diff_id=None, layer_digest=None):
    """A new image in @layout: the image @from_ref plus @layer (uncompressed tar bytes) on
    top, named @to_ref. @diff_id / @layer_digest override what the config and manifest
    say (for the refusal tests). Returns the manifest digest."""
    with open(os.path.join(layout, 'index.json')) as f:
        index = json.load(f)
    desc = [m for m in index['manifests']
            if m.get('annotations', {}).get('org.opencontainers.image.ref.name') == from_ref][0]
    manifest = json.loads(read_blob(layout, desc['digest']))
    config = json.loads(read_blob(layout, manifest['config']['digest']))
    blob = put_blob(layout, layer)
    config['rootfs']['diff_ids'].append('sha256:' + (diff_id or sha256(layer)))
    config.setdefault('history', []).append({'created_by': history})
    config_bytes = json.dumps(config).encode()
    manifest['config'] = {'mediaType': 'application/vnd.oci.image.config.v1+json',
                          'digest': 'sha256:' + put_blob(layout, config_bytes), 'size': len(config_bytes)}
    manifest['layers'].append({'mediaType': 'application/vnd.oci.image.layer.v1.tar',
                               'digest': 'sha256:' + (layer_digest or blob), 'size': len(layer)})
    manifest_bytes = json.dumps(manifest).encode()
    digest = put_blob(layout, manifest_bytes)
    index['manifests'].append({'mediaType': 'application/vnd.oci.image.manifest.v1+json',
                               'digest': 'sha256:' + digest, 'size': len(manifest_bytes),
                               'annotations': {'org.opencontainers.image.ref.name': to_ref}})
    with open(os.path.join(layout, 'index.json'), 'w') as f:
        json.dump(index, f)
    return digest


def make_images(env):
    """The test images, made once for the module; every file world-readable."""
    top = env.scratch_dir('images')
    root = os.path.join(top, 'rootfs')
    kt.kh.make_busybox_rootfs(root, applets=['sh', 'ls', 'cat', 'echo', 'id', 'true', 'env', 'pwd'])
    for d in ('dir', 'emptied', 'etc'):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    for rel, content in (('gone', b'to be deleted\n'), ('emptied/a', b'a\n'), ('emptied/b', b'b\n'),
                         ('etc/hello', b'hello\n')):
        with open(os.path.join(root, rel), 'wb') as f:
            f.write(content)
    store = os.path.join(top, 'buildah')
    buildah = ['buildah', '--root', store + '/root', '--runroot', store + '/run', '--storage-driver', 'vfs']
    layout = os.path.join(top, 'layout')

    def run(cmd):
        subprocess.run(cmd, check=True, capture_output=True, text=True)

    ctr = subprocess.run(buildah + ['from', 'scratch'], check=True, capture_output=True,
                         text=True).stdout.strip()
    run(buildah + ['copy', ctr, root + '/', '/'])
    run(buildah + ['config', '--env', 'FOO=bar', '--workingdir', '/dir', '--user', '1000:1000',
                   '--cmd', '/bin/sh', '--label', 'org.example.kind=test', '--stop-signal', 'SIGINT',
                   '--port', '8080/tcp', '--volume', '/data', ctr])
    run(buildah + ['commit', '--format', 'oci', ctr, f'oci:{layout}:v1'])
    run(buildah + ['rm', ctr])
    # The second layer deletes /gone and empties /emptied (an opaque directory with a new file).
    upper = tar_bytes([('.wh.gone', b''), ('emptied', None), ('emptied/.wh..wh..opq', b''),
                       ('emptied/new', b'new\n')])
    add_layer(layout, 'v1', 'v2', upper, history='RUN rm /gone; rm -r /emptied/*; echo new > /emptied/new')
    # skopeo's own copies: a clean layout, an oci-archive, a docker-archive.
    images = {'layout': layout, 'oci': os.path.join(top, 'skopeo-layout'),
              'oci-archive': os.path.join(top, 'image.tar'), 'docker-archive': os.path.join(top, 'docker.tar'),
              'upper': upper, 'top': top}
    run(['skopeo', 'copy', f'oci:{layout}:v2', f'oci:{images["oci"]}:v2'])
    run(['skopeo', 'copy', f'oci:{layout}:v2', f'oci-archive:{images["oci-archive"]}:v2'])
    run(['skopeo', 'copy', f'oci:{layout}:v2', f'docker-archive:{images["docker-archive"]}:test/img:v2'])
    subprocess.run(['chmod', '-R', 'a+rX', top], check=True)
    with open(os.path.join(layout, 'index.json')) as f:
        index = json.load(f)
    desc = [m for m in index['manifests'] if m['annotations']['org.opencontainers.image.ref.name'] == 'v2'][0]
    manifest = json.loads(read_blob(layout, desc['digest']))
    config = json.loads(read_blob(layout, manifest['config']['digest']))
    images['diff_ids'] = [d.split(':', 1)[1] for d in config['rootfs']['diff_ids']]
    return images


# A client of CreateBuilder with the progress option, and a second connection of the same user that
# only listens: prints {"signals": [...], "other": [...], "reply": ...} as JSON. Run with the
# system's python3 (PyGObject), as the caller.
PROGRESS_CLIENT = r"""
import json, sys
import gi
gi.require_version("Gio", "2.0")
from gi.repository import Gio, GLib
address, source, token = sys.argv[1], sys.argv[2], sys.argv[3]
flags = Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
conn = Gio.DBusConnection.new_for_address_sync(address, flags, None, None)
other = Gio.DBusConnection.new_for_address_sync(address, flags, None, None)
got = {"signals": [], "other": [], "reply": None}
def on_signal(key):
    return lambda c, sender, path, iface, member, params: got[key].append(list(params.unpack()))
for c, key in ((conn, "signals"), (other, "other")):
    c.signal_subscribe(None, "org.kiln.Builder1.Manager", "ImportProgress", None, None, 0, on_signal(key))
    c.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetId",
                None, None, 0, -1, None)  # the match is in place once this answers
loop = GLib.MainLoop()
def done(c, res):
    try:
        got["reply"] = c.call_finish(res).unpack()[0]
    except GLib.Error as e:
        got["reply"] = "ERROR " + e.message
    GLib.timeout_add(300, loop.quit)  # anything sent late would come by then
conn.call("org.kiln.Builder1", "/org/kiln/Builder1", "org.kiln.Builder1.Manager", "CreateBuilder",
          GLib.Variant("(ssa{sv})", ("", source, {"progress": GLib.Variant("s", token)})), None, 0, 120000,
          None, done)
loop.run()
print(json.dumps(got))
"""

# CreateBuilder from an oci-archive passed as an O_PATH descriptor (which needs no read permission):
# prints the reply or the error's name and message.
OPATH_CLIENT = r"""
import os, sys
import gi
gi.require_version("Gio", "2.0")
from gi.repository import Gio, GLib
address, path = sys.argv[1], sys.argv[2]
flags = Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
conn = Gio.DBusConnection.new_for_address_sync(address, flags, None, None)
fds = Gio.UnixFDList.new()
fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
fds.append(fd)
try:
    reply, _ = conn.call_with_unix_fd_list_sync(
        "org.kiln.Builder1", "/org/kiln/Builder1", "org.kiln.Builder1.Manager", "CreateBuilder",
        GLib.Variant("(ssa{sv})", ("", "oci-archive:" + path, {"rootfs_fd": GLib.Variant("h", 0)})),
        None, 0, 120000, fds, None)
    print("OK " + reply.unpack()[0])
except GLib.Error as e:
    print("ERROR " + Gio.DBusError.get_remote_error(e) + " " + e.message)
"""


# Another user's connection, listening for ImportProgress from anyone until its stdin closes.
PROGRESS_LISTENER = r"""
import json, sys
import gi
gi.require_version("Gio", "2.0")
from gi.repository import Gio, GLib
flags = Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
conn = Gio.DBusConnection.new_for_address_sync(sys.argv[1], flags, None, None)
got = []
conn.signal_subscribe(None, None, "ImportProgress", None, None, 0,
                      lambda c, s, p, i, m, params: got.append(list(params.unpack())))
conn.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetId",
               None, None, 0, -1, None)
print("READY", flush=True)
loop = GLib.MainLoop()
GLib.io_add_watch(0, GLib.IO_IN | GLib.IO_HUP, lambda *a: (loop.quit(), False)[1])
loop.run()
print(json.dumps(got), flush=True)
"""


class Images(kt.KilnTestCase):

    def tearDown(self):
        self.remove_all_builders()

    def kiln(self, *args, user=None, expect=0):
        code, out, err = self.env.kiln(*args, user=user)
        if expect is not None:
            self.assertEqual(code, expect, f'kiln {" ".join(args)} as {user or "root"}: exit {code}\n'
                                           f'stdout: {out}\nstderr: {err}')
        return out, err

    def from_image(self, source, user=None, name=None, args=()):
        args = ['from'] + (['--name', name] if name else []) + list(args) + [source]
        out, _ = self.kiln(*args, user=user)
        return out.strip()

    def run_in(self, builder, *argv, user=None):
        out, _ = self.kiln('run', builder, '--', *argv, user=user)
        return out

    def layer_dirs(self):
        return [n for n in self.listdir(self.layers_dir) if not n.startswith('.')]

    def tmp_dirs(self):
        return [n for n in self.listdir(self.layers_dir) if n.startswith('.tmp-')]

    def du(self, path):
        out = subprocess.run(['du', '-s', '--bytes', path], check=True, capture_output=True, text=True).stdout
        return int(out.split()[0])

    def builder_json(self, name, user=None):
        info = json.loads(self.kiln('inspect', name, user=user)[0])
        with open(os.path.join(self.builder_dir(info['Id']), 'builder.json')) as f:
            return info, json.load(f)

    # -- the three formats, two layers, whiteouts ---------------------------------------

    def check_image_builder(self, source, user):
        name = self.from_image(source, user=user)
        info, meta = self.builder_json(name, user=user)
        # Layers are layers: the builder stacks the image's two layers, each stored by its diff_id.
        self.assertEqual(meta['layers'], IMAGES['diff_ids'])
        self.assertEqual(info['Layers'], IMAGES['diff_ids'])
        for d in IMAGES['diff_ids']:
            self.assertIn(d, self.layer_dirs())
            st = os.lstat(os.path.join(self.layers_dir, d))
            self.assertEqual((st.st_uid, st.st_mode & 0o022), (0, 0), 'a layer is root\'s, read-only to others')
        # The second layer's whiteouts as overlayfs reads them, seen through the builder.
        listing = self.run_in(name, 'ls', '-a', '/', user=user).split()
        self.assertNotIn('gone', listing)
        self.assertIn('etc', listing)
        self.assertEqual(self.run_in(name, 'ls', '/emptied', user=user).split(), ['new'])
        self.assertEqual(self.run_in(name, 'cat', '/etc/hello', user=user), 'hello\n')
        # Image config → builder config, shown and used by a run.
        self.assertIn('FOO=bar', info['Env'])
        self.assertEqual((info['WorkingDir'], info['User'], info['Cmd']), ('/dir', '1000:1000', ['/bin/sh']))
        self.assertEqual(info['Labels'].get('org.example.kind'), 'test')
        self.assertEqual((info['StopSignal'], info['ExposedPorts']), ('SIGINT', ['8080/tcp']))
        image = json.loads(info['Image'])
        self.assertTrue(image['digest'].startswith('sha256:'))
        self.assertIn('/data', image['Volumes'])
        self.assertIn('RUN rm /gone', json.dumps(image['history']))
        # The image's volume is an empty directory, root's inside the container.
        volume = self.run_in(name, 'ls', '-ldn', '/data', user=user).split()
        self.assertEqual((volume[0][0], volume[2], volume[3]), ('d', '0', '0'), volume)
        env = self.run_in(name, 'env', user=user).split()
        self.assertIn('FOO=bar', env)
        self.assertEqual(self.run_in(name, 'pwd', user=user), '/dir\n')
        self.assertEqual(self.run_in(name, 'id', '-u', user=user), '1000\n')
        return name

    def test_oci_layout_as_root(self):
        self.check_image_builder(f'oci:{IMAGES["oci"]}:v2', None)

    def test_oci_layout_as_user(self):
        self.check_image_builder(f'oci:{IMAGES["oci"]}:v2', kt.ALICE)

    def test_oci_archive_as_user(self):
        self.check_image_builder(f'oci-archive:{IMAGES["oci-archive"]}', kt.ALICE)

    def test_oci_archive_as_root(self):
        self.check_image_builder(f'oci-archive:{IMAGES["oci-archive"]}:v2', None)

    def test_docker_archive_as_user(self):
        self.check_image_builder(f'docker-archive:{IMAGES["docker-archive"]}:test/img:v2', kt.ALICE)

    def test_docker_archive_by_index_as_root(self):
        self.check_image_builder(f'docker-archive:{IMAGES["docker-archive"]}:@0', None)

    def test_plain_directory_with_oci_layout_is_an_image(self):
        # Two images in the layout: the plain directory names no tag, so it is refused by name
        # (not imported as a root file system of blobs/ and index.json).
        out, err = self.kiln('from', IMAGES['layout'], user=kt.ALICE, expect=125)
        self.assertIn('index.json names 2 images', err)
        self.assertEqual(self.list_builders(), [])
        # skopeo's layout holds one: the directory is that image.
        name = self.from_image(IMAGES['oci'], user=kt.ALICE)
        info = json.loads(self.kiln('inspect', name, user=kt.ALICE)[0])
        self.assertEqual(info['Layers'], IMAGES['diff_ids'])
        self.assertTrue(info['From'].startswith('oci:'), info['From'])

    def test_multi_platform_index(self):
        # An index of two platforms (the same layers, configs saying amd64 and arm64), as
        # `buildah manifest` makes them: the host's by default, another with --arch / --platform.
        layout = self.copy_layout('multi')
        with open(os.path.join(layout, 'index.json')) as f:
            index = json.load(f)
        desc = [m for m in index['manifests'] if m['annotations']['org.opencontainers.image.ref.name'] == 'v2'][0]
        entries = []
        for arch in ('amd64', 'arm64'):
            manifest = json.loads(read_blob(layout, desc['digest']))
            config = json.loads(read_blob(layout, manifest['config']['digest']))
            config['architecture'] = arch
            config_bytes = json.dumps(config).encode()
            manifest['config'] = {'mediaType': 'application/vnd.oci.image.config.v1+json',
                                  'digest': 'sha256:' + put_blob(layout, config_bytes), 'size': len(config_bytes)}
            manifest_bytes = json.dumps(manifest).encode()
            entries.append({'mediaType': 'application/vnd.oci.image.manifest.v1+json',
                            'digest': 'sha256:' + put_blob(layout, manifest_bytes), 'size': len(manifest_bytes),
                            'platform': {'os': 'linux', 'architecture': arch}})
        sub = json.dumps({'schemaVersion': 2, 'mediaType': 'application/vnd.oci.image.index.v1+json',
                          'manifests': entries}).encode()
        index['manifests'].append({'mediaType': 'application/vnd.oci.image.index.v1+json',
                                   'digest': 'sha256:' + put_blob(layout, sub), 'size': len(sub),
                                   'annotations': {'org.opencontainers.image.ref.name': 'multi'}})
        with open(os.path.join(layout, 'index.json'), 'w') as f:
            json.dump(index, f)
        subprocess.run(['chmod', '-R', 'a+rX', layout], check=True)
        host = {'x86_64': 'amd64', 'aarch64': 'arm64'}.get(os.uname().machine)
        other = 'arm64' if host == 'amd64' else 'amd64'

        def arch_of(name):
            return json.loads(json.loads(self.kiln('inspect', name, user=kt.ALICE)[0])['Image'])['architecture']

        if host:
            self.assertEqual(arch_of(self.from_image(f'oci:{layout}:multi', user=kt.ALICE)), host)
        self.assertEqual(arch_of(self.from_image(f'oci:{layout}:multi', user=kt.ALICE, args=['--arch', other])),
                         other)
        self.assertEqual(arch_of(self.from_image(f'oci:{layout}:multi', user=kt.ALICE,
                                                 args=['--platform', f'linux/{other}'])), other)
        r = self.create_call('', f'oci:{layout}:multi', options={'platform': 'linux/s390x'}, user=kt.ALICE)
        self.assertError(r, 'org.kiln.Builder1.Error.NotFound', 'no image for platform linux/s390x')

    # -- sharing ------------------------------------------------------------------------

    def test_second_builder_copies_nothing(self):
        first = self.from_image(f'oci-archive:{IMAGES["oci-archive"]}', user=kt.ALICE)
        layers = self.layer_dirs()
        layers_bytes = sum(self.du(os.path.join(self.layers_dir, d)) for d in layers)
        state_bytes = self.du(self.state_dir)
        builders_bytes = self.du(self.builders_dir)
        second = self.from_image(f'oci:{IMAGES["oci"]}:v2', user=kt.ALICE)
        third = self.from_image(f'docker-archive:{IMAGES["docker-archive"]}', user=None)
        self.assertNotEqual(first, second)
        self.assertEqual(self.layer_dirs(), layers, 'a second builder of the image stored a layer')
        self.assertEqual(sum(self.du(os.path.join(self.layers_dir, d)) for d in layers), layers_bytes)
        # What grew is the builders' own directories (upper, work, builder.json) and the small
        # records of what was read (STATE/layers/.fingerprints), nothing else.
        grown = self.du(self.state_dir) - state_bytes
        self.assertLessEqual(grown, self.du(self.builders_dir) - builders_bytes + 16384, grown)
        self.assertEqual(self.tmp_dirs(), [])
        self.assertEqual(self.run_in(third, 'cat', '/emptied/new'), 'new\n')

    def test_layers_collected_with_their_last_builder(self):
        name = self.from_image(f'oci:{IMAGES["oci"]}:v2', user=kt.ALICE)
        self.assertIn(IMAGES['diff_ids'][1], self.layer_dirs())
        self.kiln('rm', name, user=kt.ALICE)
        for _ in range(50):
            if IMAGES['diff_ids'][1] not in self.layer_dirs():
                break
            subprocess.run(['sleep', '0.1'])
        self.assertNotIn(IMAGES['diff_ids'][1], self.layer_dirs())

    def test_changed_archive_read_again(self):
        # A second `from` of an unchanged file takes what the first verified (its fstat identity
        # and ctime are recorded); the same file changed in place must be read and checked again.
        # (skopeo's docker-archive keeps layers uncompressed, so the bytes can be found.)
        path = os.path.join(IMAGES['top'], 'changing.tar')
        shutil.copy(IMAGES['docker-archive'], path)
        os.chmod(path, 0o644)
        self.from_image(f'docker-archive:{path}', user=kt.ALICE)
        self.from_image(f'docker-archive:{path}', user=kt.ALICE)
        with open(path, 'r+b') as f:
            data = f.read()
            at = data.index(b'new\n')
            f.seek(at)
            f.write(b'NEW\n')
        before = self.snapshot()
        _, err = self.kiln('from', f'docker-archive:{path}', user=kt.ALICE, expect=125)
        self.assertIn('does not match diff_id', err)
        self.assertEqual(self.snapshot(), before)

    def test_changed_layout_blob_read_again(self):
        layout = self.copy_layout('changing-layout')
        self.from_image(f'oci:{layout}:v2', user=kt.ALICE)
        self.from_image(f'oci:{layout}:v2', user=kt.ALICE)
        blob = os.path.join(layout, 'blobs', 'sha256', sha256(IMAGES['upper']))
        with open(blob, 'r+b') as f:
            data = f.read()
            f.seek(data.index(b'new\n'))
            f.write(b'NEW\n')
        before = self.snapshot()
        r = self.create_call('', f'oci:{layout}:v2', user=kt.ALICE)
        self.assertError(r, INVALID, ['layer 1', 'does not match its digest'])
        self.assertEqual(self.snapshot(), before)

    # -- refusals -----------------------------------------------------------------------

    def test_unreadable_archive_refused(self):
        path = os.path.join(IMAGES['top'], 'private.tar')
        shutil.copy(IMAGES['oci-archive'], path)
        os.chmod(path, 0o600)
        before = self.snapshot()
        # Through the bus with a path: kilnd's reader opens it as the caller.
        r = self.create_call('', f'oci-archive:{path}', user=kt.ALICE)
        self.assertError(r, DENIED, [path, 'Permission denied'])
        # Through the CLI, which opens it as the caller before anything is sent.
        _, err = self.kiln('from', f'oci-archive:{path}', user=kt.ALICE, expect=125)
        self.assertIn('Permission denied', err)
        self.assertEqual(self.snapshot(), before)
        self.assertEqual(self.tmp_dirs(), [])

    def test_known_archive_needs_a_readable_descriptor(self):
        # A second `from` of an unchanged archive takes its recorded result without reading it, but
        # only from a descriptor the caller opened for reading: root's private archive, imported by
        # root, is refused to kiln-alice presenting an O_PATH descriptor of it (opening one needs no
        # read permission; the file is unchanged, so its fingerprint matches root's record).
        path = os.path.join(IMAGES['top'], 'known.tar')
        shutil.copy(IMAGES['oci-archive'], path)
        os.chmod(path, 0o600)
        self.from_image(f'oci-archive:{path}')
        self.from_image(f'oci-archive:{path}')
        before = self.snapshot()
        code, out, err = self.env.run([kt.USER_PYTHON, '-c', OPATH_CLIENT, self.env.bus_address, path],
                                      user=kt.ALICE)
        self.assertEqual(code, 0, err)
        self.assertTrue(out.startswith(f'ERROR {DENIED} '), out)
        self.assertIn('Permission denied', out)
        self.assertEqual(self.snapshot(), before)

    def test_progress_signals_reach_the_caller_alone(self):
        # A fresh copy of skopeo's two-layer layout: its blobs are read, not known by fingerprint.
        layout = self.copy_layout('progress')
        listener = subprocess.Popen(['runuser', '-u', kt.BOB, '--', kt.USER_PYTHON, '-c', PROGRESS_LISTENER,
                                     self.env.bus_address], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    text=True, cwd='/')
        try:
            self.assertEqual(listener.stdout.readline().strip(), 'READY')
            code, out, err = self.env.run([kt.USER_PYTHON, '-c', PROGRESS_CLIENT, self.env.bus_address,
                                           f'oci:{layout}:v2', 'tok-1'], user=kt.ALICE)
            self.assertEqual(code, 0, err)
        finally:
            heard, _ = listener.communicate('', timeout=30)
        got = json.loads(out)
        self.assertTrue(str(got['reply']).startswith('/org/kiln/Builder1/'), got)
        signals = got['signals']
        self.assertGreaterEqual(len(signals), 1, got)
        self.assertTrue(all(s[0] == 'tok-1' for s in signals), signals)
        layers = [s[1] for s in signals]
        done = [s[3] for s in signals]
        self.assertEqual(layers, sorted(layers), f'layer count went back: {signals}')
        self.assertEqual(done, sorted(done), f'bytes went back: {signals}')
        self.assertTrue(all(s[3] <= s[4] for s in signals), signals)
        # The last: both layers of both, every byte of the total (the layers' sizes in the manifest).
        with open(os.path.join(layout, 'index.json')) as f:
            desc = [m for m in json.load(f)['manifests']
                    if m['annotations']['org.opencontainers.image.ref.name'] == 'v2'][0]
        manifest = json.loads(read_blob(layout, desc['digest']))
        total = sum(layer['size'] for layer in manifest['layers'])
        self.assertEqual(signals[-1][1:], [2, 2, total, total], signals)
        # Unicast: neither the caller's other connection nor another user's hears any.
        self.assertEqual(got['other'], [], 'ImportProgress reached a connection that did not call')
        self.assertEqual(json.loads(heard.strip().splitlines()[-1]), [],
                         'ImportProgress reached another user')

    def copy_layout(self, name):
        dst = os.path.join(IMAGES['top'], name)
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(IMAGES['layout'], dst)
        subprocess.run(['chmod', '-R', 'a+rX', dst], check=True)
        return dst

    def test_blob_not_matching_its_digest_refused(self):
        layout = self.copy_layout('corrupt')
        other = tar_bytes([('etc', None), ('etc/other', b'other bytes\n')])
        # The manifest names the upper layer's digest, the file under that name holds other bytes.
        with open(os.path.join(layout, 'blobs', 'sha256', sha256(IMAGES['upper'])), 'wb') as f:
            f.write(other)
        before = self.snapshot()
        r = self.create_call('', f'oci:{layout}:v2', user=kt.ALICE)
        self.assertError(r, INVALID, ['layer 1', 'does not match its digest', 'sha256:' + sha256(other)])
        self.assertEqual(self.snapshot(), before)
        self.assertEqual(self.tmp_dirs(), [])

    def test_stored_layer_needs_its_bytes(self):
        # Root imports the image: its upper layer is stored under its diff_id.
        self.from_image(f'oci:{IMAGES["oci"]}:v2')
        stored = IMAGES['diff_ids'][1]
        self.assertIn(stored, self.layer_dirs())
        # A user names that diff_id in his own image, with other bytes in the blob (whose digest in
        # the manifest is right): he does not hold the layer, so he may not have it.
        layout = self.copy_layout('claim')
        other = tar_bytes([('stolen', b'x\n')])
        add_layer(layout, 'v1', 'claim', other, diff_id=stored)
        subprocess.run(['chmod', '-R', 'a+rX', layout], check=True)
        before = self.snapshot()
        r = self.create_call('', f'oci:{layout}:claim', user=kt.ALICE)
        self.assertError(r, INVALID, ['layer 1', 'does not match diff_id sha256:' + stored])
        self.assertEqual(self.snapshot(), before)
        self.assertEqual([b for b in self.list_builders() if b[2] == self.uid(kt.ALICE)], [])

    def test_too_many_layers_refused(self):
        layout = self.copy_layout('many')
        ref = 'v1'
        for i in range(LAYERS_LIMIT):
            add_layer(layout, ref, f'l{i}', tar_bytes([(f'f{i}', b'%d\n' % i)]))
            ref = f'l{i}'
        subprocess.run(['chmod', '-R', 'a+rX', layout], check=True)
        before = self.snapshot()
        r = self.create_call('', f'oci:{layout}:{ref}', user=kt.ALICE)
        self.assertError(r, LIMIT, ['LayersPerImage=%d' % LAYERS_LIMIT, 'layers'])
        self.assertEqual(self.snapshot(), before)

    def test_too_many_entries_refused(self):
        layout = self.copy_layout('entries')
        add_layer(layout, 'v1', 'big', tar_bytes([(f'f{i}', b'') for i in range(ENTRIES_LIMIT + 10)]))
        subprocess.run(['chmod', '-R', 'a+rX', layout], check=True)
        before = self.snapshot()
        r = self.create_call('', f'oci:{layout}:big', user=kt.ALICE)
        self.assertError(r, LIMIT, ['EntriesPerLayer=%d' % ENTRIES_LIMIT])
        self.assertEqual(self.snapshot(), before)
        self.assertEqual(self.tmp_dirs(), [])

    def test_unknown_platform_refused(self):
        r = self.create_call('', f'oci:{IMAGES["oci"]}:v2', options={'platform': 'linux/s390x'}, user=kt.ALICE)
        self.assertError(r, INVALID, ['linux/amd64' if os.uname().machine == 'x86_64' else 'platform',
                                      'linux/s390x'])
        r = self.create_call('', f'oci:{IMAGES["oci"]}:v2', options={'platform': 'linux'}, user=kt.ALICE)
        self.assertError(r, INVALID, 'Invalid platform')

    def test_missing_tag_refused(self):
        r = self.create_call('', f'oci:{IMAGES["oci"]}:nope', user=kt.ALICE)
        self.assertError(r, 'org.kiln.Builder1.Error.NotFound', ["'nope'"])


if __name__ == '__main__':
    kt.main()

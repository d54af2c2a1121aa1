/* SPDX-License-Identifier: Apache-2.0 */
/* The spec generator against golden files, one per option family, in tests/unit/golden/.
 *
 * Each case builds a KilnSpecInput, generates the spec and compares it with golden/NAME.json
 * canonically: both parsed, compared with json_node_equal() (member order does not matter, array
 * order does). On a difference both documents are printed.
 *
 * To rewrite the golden files after an intended change, run the tests with KILN_UPDATE_GOLDEN=1:
 *     KILN_UPDATE_GOLDEN=1 meson test -C BUILD test-spec
 * then read the diff (git diff tests/unit/golden) before committing it. */
#include <string.h>
#include <sys/capability.h>

#include "base/kiln-common.h"
#include "spec/spec-private.h"
#include "spec/spec.h"
#include "test-paths.h"

#define TEST_ID "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define BUNDLE "/run/kiln/bundles/run-1"

static const char *const default_argv[] = {"/bin/sh", "-c", "echo hello", NULL};
static const guint32 root_gids[] = {0};

static void base_input(KilnSpecInput *in)
{
        *in = (KilnSpecInput){
                .id = TEST_ID,
                .rootfs = "/run/kiln/mounts/0123456789ab",
                .argv = default_argv,
                .cwd = "/",
                .uid = 0,
                .gid = 0,
                .additional_gids = root_gids,
                .n_additional_gids = G_N_ELEMENTS(root_gids),
                .home = "/root",
                .files =
                        {
                                .hosts = BUNDLE "/hosts",
                                .resolv_conf = BUNDLE "/resolv.conf",
                                .hostname = BUNDLE "/hostname",
                                .containerenv = BUNDLE "/containerenv",
                        },
                .last_cap = 40, /* Linux 5.9 and later: CAP_CHECKPOINT_RESTORE */
        };
}

static void check_golden(const char *name, const KilnSpecInput *in)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(JsonNode) spec = kiln_spec_generate(in, &error);
        g_autoptr(JsonNode) again = NULL;
        g_autofree char *file = NULL;
        g_autofree char *path = NULL;
        g_autofree char *text = NULL;
        g_autoptr(JsonParser) parser = json_parser_new();

        g_assert_no_error(error);
        g_assert_nonnull(spec);
        /* Pure: the same input, the same document. */
        again = kiln_spec_generate(in, NULL);
        g_assert_true(json_node_equal(spec, again));

        file = g_strconcat("tests/unit/golden/", name, ".json", NULL);
        path = kiln_test_source_path(file);
        text = kiln_spec_to_data(spec, TRUE, NULL);
        if (g_strcmp0(g_getenv("KILN_UPDATE_GOLDEN"), "1") == 0) {
                g_autofree char *with_newline = g_strconcat(text, "\n", NULL);
                g_assert_true(g_file_set_contents(path, with_newline, -1, &error));
                g_assert_no_error(error);
                g_test_message("rewrote %s", path);
                return;
        }
        if (!json_parser_load_from_file(parser, path, &error))
                g_error("golden file %s: %s (KILN_UPDATE_GOLDEN=1 writes it)", path, error->message);
        if (!json_node_equal(spec, json_parser_get_root(parser))) {
                g_autofree char *expected = kiln_spec_to_data(json_parser_get_root(parser), TRUE, NULL);
                g_printerr("=== %s: generated ===\n%s\n=== expected (%s) ===\n%s\n", name, text, path,
                           expected);
                g_error("%s differs from its golden file (KILN_UPDATE_GOLDEN=1 rewrites it)", name);
        }
}

/* ---- golden cases ---- */

static void test_default(void)
{
        KilnSpecInput in;

        base_input(&in);
        check_golden("default", &in);
}

static void test_env(void)
{
        static const char *const builder_env[] = {"PATH=/opt/tool/bin:/usr/bin:/bin", "LANG=C.UTF-8",
                                                  "MODE=builder", NULL};
        static const char *const env[] = {"MODE=run", "EXTRA=a=b", "HOME=/srv", NULL};
        KilnSpecInput in;

        base_input(&in);
        in.builder_env = builder_env;
        in.env = env;
        in.hostname = "web-1";
        check_golden("env", &in);
}

static void test_user(void)
{
        static const guint32 gids[] = {1000, 10, 100};
        KilnSpecInput in;

        base_input(&in);
        in.uid = 1000;
        in.gid = 1000;
        in.additional_gids = gids;
        in.n_additional_gids = G_N_ELEMENTS(gids);
        in.home = "/home/builder";
        in.cwd = "/home/builder//src/./app/";
        check_golden("user-nonroot", &in);
}

static void test_caps(void)
{
        static const char *const builder_add[] = {"net_raw", "CAP_SYS_PTRACE", NULL};
        static const char *const builder_drop[] = {"CAP_CHOWN", NULL};
        static const char *const run_add[] = {"ALL", NULL};
        static const char *const run_drop[] = {"sys_admin", "CAP_SYS_MODULE", NULL};
        KilnSpecInput in;

        base_input(&in);
        in.builder_cap_add = builder_add;
        in.builder_cap_drop = builder_drop;
        in.cap_add = run_add;
        in.cap_drop = run_drop;
        check_golden("caps-add-all", &in);
}

static void test_caps_drop_all(void)
{
        static const char *const builder_add[] = {"SYS_ADMIN", NULL};
        static const char *const run_add[] = {"NET_BIND_SERVICE", "SETUID", NULL};
        static const char *const run_drop[] = {"all", NULL};
        KilnSpecInput in;

        base_input(&in);
        in.builder_cap_add = builder_add;
        in.cap_add = run_add;
        in.cap_drop = run_drop;
        check_golden("caps-drop-all", &in);
}

static void test_namespaces(void)
{
        KilnSpecInput in;

        base_input(&in);
        in.pid = (KilnNamespace){KILN_NAMESPACE_HOST, NULL};
        in.ipc = (KilnNamespace){KILN_NAMESPACE_PATH, "/proc/4242/ns/ipc"};
        in.uts = (KilnNamespace){KILN_NAMESPACE_HOST, NULL};
        in.cgroup = (KilnNamespace){KILN_NAMESPACE_HOST, NULL};
        in.network = (KilnNamespace){KILN_NAMESPACE_HOST, NULL};
        check_golden("namespaces-host", &in);
}

static void test_namespaces_paths(void)
{
        KilnSpecInput in;

        base_input(&in);
        in.network = (KilnNamespace){KILN_NAMESPACE_PATH, "/run/netns/build"};
        in.uts = (KilnNamespace){KILN_NAMESPACE_PATH, "/proc/4242/ns/uts"};
        in.ipc = (KilnNamespace){KILN_NAMESPACE_HOST, NULL};
        check_golden("namespaces-paths", &in);
}

static void test_network_none(void)
{
        KilnSpecInput in;

        base_input(&in);
        in.network = (KilnNamespace){KILN_NAMESPACE_NONE, NULL};
        check_golden("network-none", &in);
}

static void test_volumes(void)
{
        static const char *const ro_opts[] = {"ro", "rshared", "nosuid", "nodev", NULL};
        static const char *const plain_opts[] = {NULL};
        static const char *const caller_opts[] = {"U", "z", "noexec", NULL};
        static const char *const overlay_opts[] = {"lowerdir=/home/u/src",
                                                   "upperdir=/var/lib/kiln/o/1/upper",
                                                   "workdir=/var/lib/kiln/o/1/work", NULL};
        static const char *const hosts_opts[] = {"ro", NULL};
        const KilnMount mounts[] = {
                /* a child before its parent: the spec mounts the parent first */
                {KILN_MOUNT_BIND, "/srv/cache/pip", "/data/cache", plain_opts, "volumes[0]"},
                {KILN_MOUNT_BIND, "/srv/data/", "/data", ro_opts, "volumes[1]"},
                {KILN_MOUNT_BIND, "/home/u/out", "/out", caller_opts, "volumes[2]"},
                {KILN_MOUNT_OVERLAY, NULL, "/src", overlay_opts, "volumes[3]"},
                /* a volume at /etc/hosts replaces the generated file */
                {KILN_MOUNT_BIND, "/etc/hosts", "/etc/hosts", hosts_opts, "volumes[4]"},
        };
        KilnSpecInput in;

        base_input(&in);
        in.mounts = mounts;
        in.n_mounts = G_N_ELEMENTS(mounts);
        check_golden("volumes", &in);
}

static void test_tmpfs(void)
{
        static const char *const tmp_opts[] = {"size=100m", "mode=1777", NULL};
        static const char *const exec_opts[] = {"exec", "ro", NULL};
        static const char *const shm_opts[] = {"size=1g", NULL};
        const KilnMount mounts[] = {
                {KILN_MOUNT_TMPFS, NULL, "/tmp", tmp_opts, "mounts[0]"},
                {KILN_MOUNT_TMPFS, NULL, "/run/exec", exec_opts, "mounts[1]"},
                /* a caller's mount at a standard destination takes its place */
                {KILN_MOUNT_TMPFS, NULL, "/dev/shm", shm_opts, "mounts[2]"},
        };
        KilnSpecInput in;

        base_input(&in);
        in.mounts = mounts;
        in.n_mounts = G_N_ELEMENTS(mounts);
        check_golden("tmpfs", &in);
}

/* A tmpfs that names no size gets kiln.conf's bound; one that names a size keeps it. */
static void test_tmpfs_default_size(void)
{
        static const char *const no_size[] = {NULL};
        static const char *const sized[] = {"size=1m", NULL};
        const KilnMount mounts[] = {
                {KILN_MOUNT_TMPFS, NULL, "/tmp", no_size, "mounts[0]"},
                {KILN_MOUNT_TMPFS, NULL, "/scratch", sized, "mounts[1]"},
        };
        KilnSpecInput in;

        base_input(&in);
        in.mounts = mounts;
        in.n_mounts = G_N_ELEMENTS(mounts);
        in.tmpfs_default_size = G_GUINT64_CONSTANT(1) << 30;
        check_golden("tmpfs-default-size", &in);
}

/* The run's cgroup and limits: cgroup v1 takes the weight as cpu.shares on systemd's scale (100 is
 * 1024), v2 as cpu.weight itself, through linux.resources.unified. */
static void resources_input(KilnSpecInput *in)
{
        base_input(in);
        in->cgroups_path = "kiln/user-1000/run-kiln-0123456789ab-1";
        in->pids_limit = 2048;
        in->memory = G_GUINT64_CONSTANT(512) * 1024 * 1024;
        in->cpu_weight = 50;
}

static void test_resources(void)
{
        KilnSpecInput in;

        resources_input(&in);
        check_golden("resources-v1", &in);
        resources_input(&in);
        in.cgroup_v2 = TRUE;
        check_golden("resources-v2", &in);
        /* systemd's driver: the path is runc's slice:prefix:name; no limit but the pids one. */
        resources_input(&in);
        in.cgroups_path = "kiln-user-1000.slice:kiln:kiln-0123456789ab-1";
        in.memory = 0;
        in.cpu_weight = 0;
        check_golden("resources-systemd", &in);
}

static void test_shm_size(void)
{
        KilnSpecInput in;

        base_input(&in);
        in.shm_size = G_GUINT64_CONSTANT(256) * 1024 * 1024;
        check_golden("shm-size", &in);
}

static void test_ulimits(void)
{
        static const char *const ulimits[] = {"nofile=4096:8192",   "core=unlimited", "nproc=512:1024",
                                              "stack=-1:unlimited", "nofile=2048",    NULL};
        KilnSpecInput in;

        base_input(&in);
        in.ulimits = ulimits;
        check_golden("ulimits", &in);
}

static void test_devices(void)
{
        const KilnDevice devices[] = {
                {"/dev/fuse", 'c', 10, 229, 0666, 0, 0, NULL},
                {"/dev/xvdc", 'b', 8, 16, 0660, 0, 6, "rw"},
                {"/dev/pipe0", 'p', 0, 0, 0600, 0, 0, NULL},
        };
        KilnSpecInput in;

        base_input(&in);
        in.devices = devices;
        in.n_devices = G_N_ELEMENTS(devices);
        check_golden("devices", &in);
}

/* OCI hooks: grouped by stage in the order a run meets them, each stage's in the input's order;
 * args, env and timeout only when given. */
static void test_hooks(void)
{
        static const char *const args[] = {"record", "--stage", "prestart", NULL};
        static const char *const env[] = {"HOOK=1", NULL};
        const KilnHook hooks[] = {
                {"poststop", "/usr/libexec/oci/hooks.d/cleanup", NULL, NULL, 0},
                {"prestart", "/usr/libexec/oci/hooks.d/record", args, env, 5},
                {"createRuntime", "/usr/libexec/oci/hooks.d/net", NULL, NULL, 0},
                {"prestart", "/usr/libexec/oci/hooks.d/second", NULL, NULL, 0},
        };
        KilnSpecInput in;

        base_input(&in);
        in.hooks = hooks;
        in.n_hooks = G_N_ELEMENTS(hooks);
        check_golden("hooks-d", &in);
}

/* Run parity: in a user namespace no node can be made: a character or block device is the host's node
 * bound from host_path (a renamed one from where the host has it), with its device cgroup rule; a FIFO
 * is still made. */
static void test_devices_userns(void)
{
        static const KilnIdMapping ids[] = {{0, 100000, 65536}};
        const KilnDevice devices[] = {
                {"/dev/mynull", 'c', 1, 3, 0666, 0, 0, "rw", "/dev/null"},
                {"/dev/xvdc", 'b', 8, 16, 0660, 0, 6, NULL, NULL},
                {"/dev/pipe0", 'p', 0, 0, 0600, 0, 0, NULL, NULL},
        };
        KilnSpecInput in;

        base_input(&in);
        in.uid_mappings = in.gid_mappings = ids;
        in.n_uid_mappings = in.n_gid_mappings = 1;
        in.devices = devices;
        in.n_devices = G_N_ELEMENTS(devices);
        check_golden("devices-userns", &in);
}

static void test_no_files(void)
{
        KilnSpecInput in;

        base_input(&in);
        /* no_hosts, no_hostname, and no .containerenv or resolv.conf from the caller */
        in.files = (KilnGeneratedFiles){NULL, NULL, NULL, NULL};
        check_golden("no-files", &in);
}

static void test_userns(void)
{
        static const KilnIdMapping uids[] = {{0, 100000, 65536}};
        static const KilnIdMapping gids[] = {{0, 100000, 65536}};
        KilnSpecInput in;

        base_input(&in);
        in.uid_mappings = uids;
        in.n_uid_mappings = G_N_ELEMENTS(uids);
        in.gid_mappings = gids;
        in.n_gid_mappings = G_N_ELEMENTS(gids);
        check_golden("userns", &in);
}

static void test_userns_host(void)
{
        static const KilnIdMapping uids[] = {{0, 1000, 1}, {1, 200000, 999}};
        static const KilnIdMapping gids[] = {{0, 1000, 1}, {10, 200010, 990}};
        KilnSpecInput in;

        base_input(&in);
        in.uid_mappings = uids;
        in.n_uid_mappings = G_N_ELEMENTS(uids);
        in.gid_mappings = gids;
        in.n_gid_mappings = G_N_ELEMENTS(gids);
        /* host pid, ipc and network in a user namespace: /proc, /dev/mqueue, /dev/shm and /sys are
         * the host's, bound; gid 5 is not mapped, so /dev/pts has no gid=5 */
        in.pid = (KilnNamespace){KILN_NAMESPACE_HOST, NULL};
        in.ipc = (KilnNamespace){KILN_NAMESPACE_HOST, NULL};
        in.network = (KilnNamespace){KILN_NAMESPACE_HOST, NULL};
        check_golden("userns-host", &in);
}

static gboolean has_mount(JsonNode *spec, const char *destination)
{
        JsonArray *mounts = json_object_get_array_member(json_node_get_object(spec), "mounts");

        for (guint i = 0; i < json_array_get_length(mounts); i++)
                if (g_str_equal(json_object_get_string_member(json_array_get_object_element(mounts, i),
                                                              "destination"),
                                destination))
                        return TRUE;
        return FALSE;
}

/* A host without /dev/shm or /dev/mqueue has nothing to bind: those mounts are left out. */
static void test_host_lacks(void)
{
        static const KilnIdMapping ids[] = {{0, 100000, 65536}};
        g_autoptr(JsonNode) spec = NULL;
        KilnSpecInput in;

        base_input(&in);
        in.uid_mappings = in.gid_mappings = ids;
        in.n_uid_mappings = in.n_gid_mappings = 1;
        in.ipc.mode = KILN_NAMESPACE_HOST;
        spec = kiln_spec_generate(&in, NULL);
        g_assert_true(has_mount(spec, "/dev/shm"));
        g_assert_true(has_mount(spec, "/dev/mqueue"));
        g_clear_pointer(&spec, json_node_unref);

        in.host_lacks_dev_shm = in.host_lacks_dev_mqueue = TRUE;
        spec = kiln_spec_generate(&in, NULL);
        g_assert_false(has_mount(spec, "/dev/shm"));
        g_assert_false(has_mount(spec, "/dev/mqueue"));
}

static JsonNode *small_seccomp_profile(void)
{
        static const char profile[] =
                "{\"defaultAction\": \"SCMP_ACT_ERRNO\", \"defaultErrnoRet\": 38,"
                " \"architectures\": [\"SCMP_ARCH_X86_64\"],"
                " \"syscalls\": [{\"names\": [\"read\", \"write\"], \"action\": \"SCMP_ACT_ALLOW\"}]}";
        g_autoptr(JsonParser) parser = json_parser_new();

        g_assert_true(json_parser_load_from_data(parser, profile, -1, NULL));
        return json_node_copy(json_parser_get_root(parser));
}

static void test_seccomp(void)
{
        static const char *const annotations[] = {"org.opencontainers.image.title=demo", "com.example.x=1=2",
                                                  NULL};
        g_autoptr(JsonNode) profile = small_seccomp_profile();
        KilnSpecInput in;

        base_input(&in);
        in.seccomp = profile;
        in.no_new_privileges = TRUE;
        in.terminal = TRUE;
        in.terminal_rows = 24;
        in.terminal_cols = 80;
        in.annotations = annotations;
        check_golden("seccomp-default", &in);

        base_input(&in);
        in.seccomp = NULL; /* unconfined: no linux.seccomp at all */
        check_golden("seccomp-unconfined", &in);
}

/* ---- errors ---- */

typedef void (*Mutator)(KilnSpecInput *in);

static void m_hostname_host_uts(KilnSpecInput *in)
{
        in->hostname = "box";
        in->uts.mode = KILN_NAMESPACE_HOST;
}
static void m_bad_hostname(KilnSpecInput *in)
{
        in->hostname = "under_score";
}
static void m_no_argv(KilnSpecInput *in)
{
        static const char *const none[] = {NULL};
        in->argv = none;
}
static void m_relative_cwd(KilnSpecInput *in)
{
        in->cwd = "work";
}
static void m_dotdot_cwd(KilnSpecInput *in)
{
        in->cwd = "/a/../../etc";
}
static void m_relative_ns(KilnSpecInput *in)
{
        in->pid = (KilnNamespace){KILN_NAMESPACE_PATH, "proc/1/ns/pid"};
}
static void m_ipc_none(KilnSpecInput *in)
{
        in->ipc.mode = KILN_NAMESPACE_NONE;
}
static void m_uid_map_only(KilnSpecInput *in)
{
        static const KilnIdMapping m[] = {{0, 100000, 10}};
        in->uid_mappings = m;
        in->n_uid_mappings = 1;
}
static void m_unmapped_uid(KilnSpecInput *in)
{
        static const KilnIdMapping m[] = {{0, 100000, 10}};
        in->uid_mappings = in->gid_mappings = m;
        in->n_uid_mappings = in->n_gid_mappings = 1;
        in->uid = 1000;
}
static void m_overlapping_map(KilnSpecInput *in)
{
        static const KilnIdMapping m[] = {{0, 100000, 10}, {5, 200000, 10}};
        static const KilnIdMapping g[] = {{0, 100000, 10}};
        in->uid_mappings = m;
        in->n_uid_mappings = 2;
        in->gid_mappings = g;
        in->n_gid_mappings = 1;
}
static void m_bad_cap(KilnSpecInput *in)
{
        static const char *const add[] = {"CAP_FLY", NULL};
        in->cap_add = add;
}
static void m_cap_both(KilnSpecInput *in)
{
        static const char *const add[] = {"NET_RAW", NULL};
        static const char *const drop[] = {"cap_net_raw", NULL};
        in->cap_add = add;
        in->cap_drop = drop;
}
static void m_cap_all_both(KilnSpecInput *in)
{
        static const char *const all[] = {"ALL", NULL};
        in->builder_cap_add = all;
        in->builder_cap_drop = all;
}
static void m_cap_newer_than_kernel(KilnSpecInput *in)
{
        static const char *const add[] = {"CAP_CHECKPOINT_RESTORE", NULL};
        in->cap_add = add;
        in->last_cap = 37;
}
/* kilnd under a bounding set without CAP_SYS_RESOURCE (CAP_SYS_RESOURCE is capability 24). */
static void m_cap_outside_bounding(KilnSpecInput *in)
{
        static const char *const add[] = {"SYS_RESOURCE", NULL};
        in->cap_add = add;
        in->bounding_set = ((G_GUINT64_CONSTANT(1) << 41) - 1) & ~(G_GUINT64_CONSTANT(1) << 24);
}
static void m_bad_ulimit(KilnSpecInput *in)
{
        static const char *const u[] = {"nofile=10:5", NULL};
        in->ulimits = u;
}
static void m_bad_env(KilnSpecInput *in)
{
        static const char *const e[] = {"OK=1", "NOVALUE", NULL};
        in->env = e;
}
static void m_shm_with_host_ipc(KilnSpecInput *in)
{
        in->ipc.mode = KILN_NAMESPACE_HOST;
        in->shm_size = 1024;
}
static void m_bad_device(KilnSpecInput *in)
{
        static const KilnDevice d[] = {{"/dev/x", 'x', 1, 1, 0600, 0, 0, NULL}};
        in->devices = d;
        in->n_devices = 1;
}
static void m_bad_device_access(KilnSpecInput *in)
{
        static const KilnDevice d[] = {{"/dev/x", 'c', 1, 1, 0600, 0, 0, "rwx"}};
        in->devices = d;
        in->n_devices = 1;
}
static void m_seccomp_not_object(KilnSpecInput *in)
{
        static JsonNode *node;
        if (!node)
                node = json_node_init_string(json_node_alloc(), "default");
        in->seccomp = node;
}

#define MOUNT_MUTATOR(fn, type, src, dst, ...)                                                              \
        static void fn(KilnSpecInput *in)                                                                   \
        {                                                                                                   \
                static const char *const opts[] = {__VA_ARGS__, NULL};                                      \
                static const KilnMount m[] = {{type, src, dst, opts, "volumes[0]"}};                        \
                in->mounts = m;                                                                             \
                in->n_mounts = 1;                                                                           \
        }

MOUNT_MUTATOR(m_vol_dotdot, KILN_MOUNT_BIND, "/srv", "/data/../etc", "ro")
MOUNT_MUTATOR(m_vol_proc, KILN_MOUNT_BIND, "/srv", "/proc/sys", "ro")
MOUNT_MUTATOR(m_vol_root, KILN_MOUNT_BIND, "/srv", "//", "ro")
MOUNT_MUTATOR(m_vol_relative_source, KILN_MOUNT_BIND, "srv", "/data", "ro")
MOUNT_MUTATOR(m_vol_overlay_flag, KILN_MOUNT_BIND, "/srv", "/data", "O")
MOUNT_MUTATOR(m_vol_suid, KILN_MOUNT_BIND, "/srv", "/data", "suid")
MOUNT_MUTATOR(m_vol_ro_rw, KILN_MOUNT_BIND, "/srv", "/data", "ro", "rw")
MOUNT_MUTATOR(m_vol_two_propagations, KILN_MOUNT_BIND, "/srv", "/data", "shared", "slave")
MOUNT_MUTATOR(m_tmpfs_bad_size, KILN_MOUNT_TMPFS, NULL, "/tmp", "size=lots")
MOUNT_MUTATOR(m_tmpfs_bad_mode, KILN_MOUNT_TMPFS, NULL, "/tmp", "mode=999")
MOUNT_MUTATOR(m_tmpfs_exec_noexec, KILN_MOUNT_TMPFS, NULL, "/tmp", "exec", "noexec")
MOUNT_MUTATOR(m_overlay_no_lower, KILN_MOUNT_OVERLAY, NULL, "/src", "upperdir=/u", "workdir=/w")
MOUNT_MUTATOR(m_overlay_upper_only, KILN_MOUNT_OVERLAY, NULL, "/src", "lowerdir=/l", "upperdir=/u")
MOUNT_MUTATOR(m_overlay_comma, KILN_MOUNT_OVERLAY, NULL, "/src", "lowerdir=/l,upperdir=/x")

static void m_duplicate_volumes(KilnSpecInput *in)
{
        static const char *const opts[] = {NULL};
        static const KilnMount m[] = {
                {KILN_MOUNT_BIND, "/a", "/data", opts, "volumes[0]"},
                {KILN_MOUNT_TMPFS, NULL, "/data/", opts, "mounts[0]"},
        };
        in->mounts = m;
        in->n_mounts = 2;
}

static void m_hook_unknown_stage(KilnSpecInput *in)
{
        static const KilnHook hook = {"prestop", "/bin/true", NULL, NULL, 0};
        in->hooks = &hook;
        in->n_hooks = 1;
}

static void m_hook_relative_path(KilnSpecInput *in)
{
        static const KilnHook hooks[] = {{"prestart", "/bin/true", NULL, NULL, 0},
                                         {"poststop", "true", NULL, NULL, 0}};
        in->hooks = hooks;
        in->n_hooks = 2;
}

static void m_negative_pids(KilnSpecInput *in)
{
        in->pids_limit = -1;
}

static void m_cpu_weight_too_high(KilnSpecInput *in)
{
        in->cpu_weight = 10001;
}

static void m_cgroups_path_dotdot(KilnSpecInput *in)
{
        in->cgroups_path = "kiln/../../escape";
}

static const struct {
        const char *name;
        Mutator mutate;
        const char *arg; /* the argument the message must name */
} error_cases[] = {
        {"negative-pids-limit", m_negative_pids, "pids_limit"},
        {"hook-unknown-stage", m_hook_unknown_stage, "hooks[0]"},
        {"hook-relative-path", m_hook_relative_path, "hooks[1]"},
        {"cpu-weight-too-high", m_cpu_weight_too_high, "cpu_weight"},
        {"cgroups-path-dotdot", m_cgroups_path_dotdot, "cgroups_path"},
        {"hostname-host-uts", m_hostname_host_uts, "hostname"},
        {"bad-hostname", m_bad_hostname, "hostname"},
        {"no-argv", m_no_argv, "argv"},
        {"relative-cwd", m_relative_cwd, "working_dir"},
        {"dotdot-cwd", m_dotdot_cwd, "working_dir"},
        {"relative-ns", m_relative_ns, "pid"},
        {"ipc-none", m_ipc_none, "ipc"},
        {"uid-map-only", m_uid_map_only, "userns"},
        {"unmapped-uid", m_unmapped_uid, "user"},
        {"overlapping-map", m_overlapping_map, "uid mappings"},
        {"bad-cap", m_bad_cap, "cap_add"},
        {"cap-both", m_cap_both, "cap_add"},
        {"cap-all-both", m_cap_all_both, "cap_add"},
        {"cap-newer-than-kernel", m_cap_newer_than_kernel, "cap_add"},
        {"cap-outside-bounding", m_cap_outside_bounding, "cap_add"},
        {"bad-ulimit", m_bad_ulimit, "ulimits[0]"},
        {"bad-env", m_bad_env, "env[1]"},
        {"shm-with-host-ipc", m_shm_with_host_ipc, "shm_size"},
        {"bad-device", m_bad_device, "devices[0]"},
        {"bad-device-access", m_bad_device_access, "devices[0]"},
        {"seccomp-not-object", m_seccomp_not_object, "seccomp_profile"},
        {"vol-dotdot", m_vol_dotdot, "volumes[0]"},
        {"vol-proc", m_vol_proc, "volumes[0]"},
        {"vol-root", m_vol_root, "volumes[0]"},
        {"vol-relative-source", m_vol_relative_source, "volumes[0]"},
        {"vol-overlay-flag", m_vol_overlay_flag, "volumes[0]"},
        {"vol-suid", m_vol_suid, "volumes[0]"},
        {"vol-ro-rw", m_vol_ro_rw, "volumes[0]"},
        {"vol-two-propagations", m_vol_two_propagations, "volumes[0]"},
        {"tmpfs-bad-size", m_tmpfs_bad_size, "volumes[0]"},
        {"tmpfs-bad-mode", m_tmpfs_bad_mode, "volumes[0]"},
        {"tmpfs-exec-noexec", m_tmpfs_exec_noexec, "volumes[0]"},
        {"overlay-no-lower", m_overlay_no_lower, "volumes[0]"},
        {"overlay-upper-only", m_overlay_upper_only, "volumes[0]"},
        {"overlay-comma", m_overlay_comma, "volumes[0]"},
        {"duplicate-volumes", m_duplicate_volumes, "mounts[0]"},
};

static void test_errors(void)
{
        for (gsize i = 0; i < G_N_ELEMENTS(error_cases); i++) {
                g_autoptr(GError) error = NULL;
                g_autoptr(JsonNode) spec = NULL;
                KilnSpecInput in;

                base_input(&in);
                error_cases[i].mutate(&in);
                spec = kiln_spec_generate(&in, &error);
                g_test_message("%s: %s", error_cases[i].name, error ? error->message : "(no error)");
                g_assert_null(spec);
                g_assert_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT);
                if (!strstr(error->message, error_cases[i].arg))
                        g_error("%s: '%s' does not name %s", error_cases[i].name, error->message,
                                error_cases[i].arg);
        }
}

/* ---- the helpers around the document ---- */

static void test_environment(void)
{
        static const char *const env[] = {"PATH=/x/bin", "HOSTNAME=given", NULL};
        g_autoptr(GError) error = NULL;
        g_auto(GStrv) result = NULL;
        KilnSpecInput in;

        base_input(&in);
        result = kiln_spec_environment(&in, &error);
        g_assert_no_error(error);
        g_assert_cmpstr(g_environ_getenv(result, "PATH"), ==,
                        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        g_assert_cmpstr(g_environ_getenv(result, "HOSTNAME"), ==, "0123456789ab");
        g_assert_cmpstr(g_environ_getenv(result, "HOME"), ==, "/root");
        g_clear_pointer(&result, g_strfreev);

        in.env = env;
        in.uts.mode = KILN_NAMESPACE_HOST;
        in.home = NULL;
        result = kiln_spec_environment(&in, &error);
        g_assert_no_error(error);
        g_assert_cmpstr(result[0], ==, "PATH=/x/bin"); /* replaced in place */
        g_assert_cmpstr(g_environ_getenv(result, "HOSTNAME"), ==, "given");
        g_assert_null(g_environ_getenv(result, "HOME"));
        g_assert_cmpuint(g_strv_length(result), ==, 2);
}

static void test_capabilities(void)
{
        static const char *const drop_all[] = {"ALL", NULL};
        g_autoptr(GError) error = NULL;
        g_auto(GStrv) caps = NULL;
        KilnSpecInput in;

        base_input(&in);
        caps = kiln_spec_capabilities(&in, &error);
        g_assert_no_error(error);
        g_assert_cmpuint(g_strv_length(caps), ==, g_strv_length((char **)kiln_default_capabilities));
        for (const char *const *c = kiln_default_capabilities; *c; c++)
                g_assert_true(g_strv_contains((const char *const *)caps, *c));
        g_clear_pointer(&caps, g_strfreev);

        in.cap_drop = drop_all;
        caps = kiln_spec_capabilities(&in, &error);
        g_assert_no_error(error);
        g_assert_cmpuint(g_strv_length(caps), ==, 0);
}

/* ALL is kilnd's bounding set, not every capability of the kernel; a default capability kilnd lacks is
 * left out rather than asked of a runtime that cannot grant it. */
static void test_capabilities_bounding(void)
{
        static const char *const add_all[] = {"ALL", NULL};
        static const char *const drop_raw[] = {"NET_RAW", NULL};
        guint64 bounding = ((G_GUINT64_CONSTANT(1) << 41) - 1) &
                           ~(G_GUINT64_CONSTANT(1) << CAP_SYS_RESOURCE) &
                           ~(G_GUINT64_CONSTANT(1) << CAP_KILL);
        g_autoptr(GError) error = NULL;
        guint64 set = 0;
        KilnSpecInput in;

        base_input(&in);
        in.bounding_set = bounding;
        g_assert_true(kiln_spec_capability_set(&in, &set, &error));
        g_assert_no_error(error);
        g_assert_false(set & (G_GUINT64_CONSTANT(1) << CAP_KILL));
        g_assert_true(set & (G_GUINT64_CONSTANT(1) << CAP_CHOWN));

        in.cap_add = add_all;
        in.cap_drop = drop_raw;
        g_assert_true(kiln_spec_capability_set(&in, &set, &error));
        g_assert_no_error(error);
        g_assert_cmphex(set, ==, bounding & ~(G_GUINT64_CONSTANT(1) << CAP_NET_RAW));

        /* Dropping a capability kilnd lacks is no error. */
        in.cap_add = NULL;
        in.cap_drop = (const char *const[]){"SYS_RESOURCE", NULL};
        g_assert_true(kiln_spec_capability_set(&in, &set, &error));
        g_assert_no_error(error);
}

static void test_to_data(void)
{
        static const char *const ulimits[] = {"core=unlimited", NULL};
        static const char *const env[] = {"NEG=-1", "QUOTE=\"-5\"", "ESC=\\-7", NULL};
        g_autoptr(JsonNode) spec = NULL;
        g_autoptr(JsonParser) parser = json_parser_new();
        g_autofree char *text = NULL;
        KilnSpecInput in;

        base_input(&in);
        in.ulimits = ulimits;
        in.env = env;
        spec = kiln_spec_generate(&in, NULL);
        text = kiln_spec_to_data(spec, FALSE, NULL);
        /* RLIM_INFINITY as runc reads it (a uint64), strings untouched */
        g_assert_nonnull(strstr(text, "\"hard\":18446744073709551615,\"soft\":18446744073709551615"));
        g_assert_nonnull(strstr(text, "\"NEG=-1\""));
        g_assert_nonnull(strstr(text, "\"QUOTE=\\\"-5\\\"\""));
        g_assert_nonnull(strstr(text, "\"ESC=\\\\-7\""));
        g_assert_null(strstr(text, ":-"));
        /* and json-glib reads it back to the same document */
        g_assert_true(json_parser_load_from_data(parser, text, -1, NULL));
        g_assert_true(json_node_equal(spec, json_parser_get_root(parser)));
}

static void test_namespace_parse(void)
{
        KilnNamespace ns;
        g_autoptr(GError) e1 = NULL, e2 = NULL, e3 = NULL;

        g_assert_true(kiln_namespace_parse("pid", "", FALSE, &ns, NULL));
        g_assert_cmpint(ns.mode, ==, KILN_NAMESPACE_PRIVATE);
        g_assert_true(kiln_namespace_parse("pid", "host", FALSE, &ns, NULL));
        g_assert_cmpint(ns.mode, ==, KILN_NAMESPACE_HOST);
        g_assert_true(kiln_namespace_parse("network", "none", TRUE, &ns, NULL));
        g_assert_cmpint(ns.mode, ==, KILN_NAMESPACE_NONE);
        g_assert_true(kiln_namespace_parse("network", "ns:/run/netns/x", TRUE, &ns, NULL));
        g_assert_cmpint(ns.mode, ==, KILN_NAMESPACE_PATH);
        g_assert_cmpstr(ns.path, ==, "/run/netns/x");
        g_assert_false(kiln_namespace_parse("ipc", "none", FALSE, &ns, &e1));
        g_assert_nonnull(strstr(e1->message, "ipc"));
        g_assert_false(kiln_namespace_parse("uts", "ns:relative", FALSE, &ns, &e2));
        g_assert_nonnull(strstr(e2->message, "uts"));
        g_assert_false(kiln_namespace_parse("pid", "shared", FALSE, &ns, &e3));
        g_assert_nonnull(strstr(e3->message, "pid"));
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/spec/golden/default", test_default);
        g_test_add_func("/spec/golden/env", test_env);
        g_test_add_func("/spec/golden/user-nonroot", test_user);
        g_test_add_func("/spec/golden/caps-add-all", test_caps);
        g_test_add_func("/spec/golden/caps-drop-all", test_caps_drop_all);
        g_test_add_func("/spec/capabilities-bounding", test_capabilities_bounding);
        g_test_add_func("/spec/golden/namespaces-host", test_namespaces);
        g_test_add_func("/spec/golden/namespaces-paths", test_namespaces_paths);
        g_test_add_func("/spec/golden/network-none", test_network_none);
        g_test_add_func("/spec/golden/volumes", test_volumes);
        g_test_add_func("/spec/golden/tmpfs", test_tmpfs);
        g_test_add_func("/spec/golden/tmpfs-default-size", test_tmpfs_default_size);
        g_test_add_func("/spec/golden/resources", test_resources);
        g_test_add_func("/spec/golden/shm-size", test_shm_size);
        g_test_add_func("/spec/golden/ulimits", test_ulimits);
        g_test_add_func("/spec/golden/devices", test_devices);
        g_test_add_func("/spec/golden/devices-userns", test_devices_userns);
        g_test_add_func("/spec/golden/no-files", test_no_files);
        g_test_add_func("/spec/golden/hooks-d", test_hooks);
        g_test_add_func("/spec/golden/userns", test_userns);
        g_test_add_func("/spec/golden/userns-host", test_userns_host);
        g_test_add_func("/spec/golden/seccomp", test_seccomp);
        g_test_add_func("/spec/host-lacks", test_host_lacks);
        g_test_add_func("/spec/errors", test_errors);
        g_test_add_func("/spec/environment", test_environment);
        g_test_add_func("/spec/capabilities", test_capabilities);
        g_test_add_func("/spec/to-data", test_to_data);
        g_test_add_func("/spec/namespace-parse", test_namespace_parse);
        return g_test_run();
}

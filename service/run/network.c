/* SPDX-License-Identifier: Apache-2.0 */
/* User-mode networks: see network.h for the sequence, docs/network.md for why it is this one. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib-unix.h>

#include "base/errors.h"
#include "run/network.h"
#include "base/reaper.h"
#include "base/validate.h"

#define LOG_MAX 2048
/* Targets of the descriptors the helper inherits; /proc/self/fd/N names them for it. */
#define FD_USERNS 3
#define FD_NETNS 4
#define FD_READY 5
#define FD_EXIT 6

typedef enum { HELPER_PASTA, HELPER_SLIRP4NETNS } Helper;

static const struct {
        const char *name;
        const char *package; /* Debian's */
} helpers[] = {
        [HELPER_PASTA] = {"pasta", "passt"},
        [HELPER_SLIRP4NETNS] = {"slirp4netns", "slirp4netns"},
};

struct KilnNetwork {
        Helper helper;
        char *program; /* absolute */
        char **extra;  /* the helper's arguments from network_options, translated */
        gboolean host_loopback;
        uid_t uid;
        gid_t gid;
        char *userns_path, *netns_path; /* bind mounts of the namespaces, in the bundle */
        char *record_path;              /* "PID STARTTIME" of the helper, for a later start-up */
        char *log_path;                 /* the helper's stderr */
        int userns_fd, netns_fd;
        unsigned timeout_seconds;
        GSubprocess *process;
        int ready_fd;              /* read end: the helper writes to it once it is ready */
        int route_fd;              /* pasta: rtnetlink in the run's network namespace, routes as they come */
        gboolean want_v4, want_v6; /* the default routes pasta will copy from the host */
        gboolean seen_v4, seen_v6;
        guint route_source;
        int exit_fd; /* write end of slirp4netns's --exit-fd: it ends when this closes */
        /* The gate (kiln-net-gate, the run's first createRuntime hook) waits on this FIFO in the bundle for
         * one byte: 'r' ready, 'f' failed. kilnd holds its only writer (opened read-write, so that the byte
         * stays buffered until the gate reads it): a kilnd that dies is an end of file there. */
        char *gate_path;
        char *gate_program;
        const char *gate_args[3];
        int gate_fd;
        gboolean decided; /* ready or failed: @outcome (NULL: ready) was told to the gate */
        GError *outcome;
        guint ready_source, timeout_source;
        GCancellable *cancellable;
        gulong cancel_handler;
        guint cancel_idle;
};

/* add_owned() is GLib 2.80; Debian 12 has 2.74. */
static void add_owned(GStrvBuilder *builder, char *value)
{
        g_strv_builder_add(builder, value);
        g_free(value);
}

/* ---- defaults ---- */

static char *find_program(const char *program)
{
        char *path = g_path_is_absolute(program) ? g_strdup(program) : g_find_program_in_path(program);

        if (path && !g_file_test(path, G_FILE_TEST_IS_EXECUTABLE))
                g_clear_pointer(&path, g_free);
        return path;
}

void kiln_network_detect_default(KilnConfig *config)
{
        g_autofree char *pasta = NULL;

        if (config->network_default && *config->network_default)
                return;
        pasta = find_program(config->pasta_program);
        g_free(config->network_default);
        config->network_default = g_strdup(pasta ? "pasta" : "private");
        g_message("Runs that name no network get '%s'%s", config->network_default,
                  pasta ? "" : " (pasta was not found)");
}

const char *kiln_network_effective(const KilnConfig *config, const char *run_value,
                                   const char *builder_value)
{
        if (run_value && *run_value)
                return run_value;
        if (builder_value && *builder_value)
                return builder_value;
        return config->network_default && *config->network_default ? config->network_default : "private";
}

static int helper_of(const char *network)
{
        for (size_t i = 0; i < G_N_ELEMENTS(helpers); i++)
                if (g_strcmp0(network, helpers[i].name) == 0)
                        return (int)i;
        return -1;
}

gboolean kiln_network_needs_helper(const char *network)
{
        return helper_of(network) >= 0;
}

/* ---- checks of caller strings ---- */

gboolean kiln_network_validate_mode(const char *arg, const char *value, GError **error)
{
        static const char *const plain[] = {"", "private", "none", "host", "pasta", "slirp4netns", NULL};

        if (g_strv_contains(plain, value))
                return TRUE;
        if (g_str_has_prefix(value, "ns:"))
                return kiln_validate_absolute_path(arg, value + 3, FALSE, error);
        return kiln_invalid(
                error, arg,
                "'%s' is not one of 'private', 'none', 'host', 'pasta', 'slirp4netns', 'ns:PATH'", value);
}

static gboolean is_ip(const char *value)
{
        g_autoptr(GInetAddress) address = g_inet_address_new_from_string(value);

        return address != NULL;
}

gboolean kiln_network_validate_dns(const char *arg, const char *value, GError **error)
{
        if (g_str_equal(value, "none") || is_ip(value))
                return TRUE;
        return kiln_invalid(error, arg, "'%s' is not an IP address (or 'none')", value);
}

static gboolean is_domain(const char *value)
{
        if (!*value || strlen(value) > 253 || value[0] == '-' || value[0] == '.')
                return FALSE;
        for (const char *p = value; *p; p++)
                if (!g_ascii_isalnum(*p) && *p != '-' && *p != '.' && *p != '_')
                        return FALSE;
        return TRUE;
}

gboolean kiln_network_validate_dns_search(const char *arg, const char *value, GError **error)
{
        /* "." alone is resolv.conf's way of saying "no search domain". */
        if (g_str_equal(value, ".") || is_domain(value))
                return TRUE;
        return kiln_invalid(error, arg, "'%s' is not a domain name", value);
}

/* resolv.conf's options are words such as ndots:2, timeout:1, edns0, rotate: nothing that could start
 * another line or option. */
gboolean kiln_network_validate_dns_option(const char *arg, const char *value, GError **error)
{
        if (*value && strlen(value) <= 64 && g_ascii_isalpha(value[0]) &&
            strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:-_.") ==
                    strlen(value))
                return TRUE;
        return kiln_invalid(error, arg, "'%s' is not a resolver option such as ndots:2", value);
}

/* NAME:IP, as buildah's --add-host (IPv6 addresses hold ':', so the name ends at the first one). */
gboolean kiln_network_validate_add_host(const char *arg, const char *value, GError **error)
{
        const char *colon = strchr(value, ':');
        g_autofree char *name = colon ? g_strndup(value, (gsize)(colon - value)) : NULL;

        if (!colon)
                return kiln_invalid(error, arg, "'%s' is not NAME:IP", value);
        if (!is_domain(name))
                return kiln_invalid(error, arg, "'%s' is not a host name", name);
        if (!is_ip(colon + 1))
                return kiln_invalid(error, arg, "'%s' is not an IP address", colon + 1);
        return TRUE;
}

gboolean kiln_network_validate_option(const char *arg, const char *value, GError **error)
{
        /* A word, never a flag: options are looked up in translate_options(), and nothing else reaches a
         * helper. */
        if (g_ascii_islower(value[0]) && strlen(value) <= 64 &&
            strspn(value, "abcdefghijklmnopqrstuvwxyz0123456789_=.-") == strlen(value))
                return TRUE;
        return kiln_invalid(error, arg, "'%s' is not KEY or KEY=VALUE", value);
}

/* network_options become the helper's arguments only through this table: a caller never hands a helper
 * a raw argument (pasta and slirp4netns take paths, sockets and port forwards that would reach the host
 * as the builder's owner would not have asked for). */
static gboolean translate_options(Helper helper, char **options, GStrvBuilder *out, gboolean *host_loopback,
                                  GError **error)
{
        *host_loopback = helper == HELPER_PASTA; /* pasta maps its gateway to the host's loopback */
        for (char **o = options; o && *o; o++) {
                g_autofree char *arg = g_strdup_printf("network_options[%d]", (int)(o - options));
                const char *eq = strchr(*o, '=');
                g_autofree char *key = eq ? g_strndup(*o, (gsize)(eq - *o)) : g_strdup(*o);
                const char *value = eq ? eq + 1 : NULL;
                guint64 n;

                if (!kiln_network_validate_option(arg, *o, error))
                        return FALSE;
                if (g_str_equal(key, "mtu") && value &&
                    g_ascii_string_to_unsigned(value, 10, 576, 65520, &n, NULL)) {
                        add_owned(out, g_strdup_printf("--mtu=%s", value));
                } else if (helper == HELPER_PASTA && g_str_equal(*o, "no_map_gw")) {
                        g_strv_builder_add(out, "--no-map-gw");
                        *host_loopback = FALSE;
                } else if (helper == HELPER_PASTA && g_str_equal(*o, "ipv4_only")) {
                        g_strv_builder_add(out, "--ipv4-only");
                } else if (helper == HELPER_PASTA && g_str_equal(*o, "ipv6_only")) {
                        g_strv_builder_add(out, "--ipv6-only");
                } else if (helper == HELPER_SLIRP4NETNS && g_str_equal(key, "allow_host_loopback") &&
                           (g_strcmp0(value, "true") == 0 || g_strcmp0(value, "false") == 0)) {
                        *host_loopback = g_str_equal(value, "true");
                } else if (helper == HELPER_SLIRP4NETNS && g_str_equal(key, "enable_ipv6") &&
                           (g_strcmp0(value, "true") == 0 || g_strcmp0(value, "false") == 0)) {
                        if (g_str_equal(value, "true"))
                                g_strv_builder_add(out, "--enable-ipv6");
                } else {
                        return kiln_invalid(
                                error, arg, "'%s' is not an option of %s (%s)", *o, helpers[helper].name,
                                helper == HELPER_PASTA ? "mtu=N, no_map_gw, ipv4_only, ipv6_only"
                                                       : "mtu=N, allow_host_loopback=true|false, "
                                                         "enable_ipv6=true|false");
                }
        }
        return TRUE;
}

/* ---- the namespaces ---- */

static gboolean write_proc_file(pid_t pid, const char *name, const char *contents, GError **error)
{
        g_autofree char *path = g_strdup_printf("/proc/%d/%s", (int)pid, name);
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);

        if (fd < 0 || write(fd, contents, strlen(contents)) != (ssize_t)strlen(contents))
                return kiln_fail(error, KILN_ERROR_CODE_RUNTIME_FAILED,
                                 "Cannot write %s of the network's user "
                                 "namespace: %s",
                                 name, g_strerror(errno));
        return TRUE;
}

/* An empty file bound over by the namespace @ns of @pid. The bundle is kilnd's own, fresh and root-only. */
static gboolean bind_namespace(pid_t pid, const char *ns, const char *target, int *ret_fd, GError **error)
{
        g_autofree char *source = g_strdup_printf("/proc/%d/ns/%s", (int)pid, ns);
        _cleanup_close_ int fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);

        if (fd < 0)
                return kiln_fail(error, KILN_ERROR_CODE_RUNTIME_FAILED,
                                 "Cannot create the %s namespace's "
                                 "file: %s",
                                 ns, g_strerror(errno));
        if (mount(source, target, NULL, MS_BIND, NULL) < 0)
                return kiln_fail(error, KILN_ERROR_CODE_RUNTIME_FAILED, "Cannot bind the %s namespace: %s",
                                 ns, g_strerror(errno));
        *ret_fd = open(target, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (*ret_fd < 0)
                return kiln_fail(error, KILN_ERROR_CODE_RUNTIME_FAILED, "Cannot open the %s namespace: %s",
                                 ns, g_strerror(errno));
        return TRUE;
}

/* The child of make_namespaces(): only system calls between fork and _exit (kilnd has threads). It drops
 * to the builder's owner entirely before it unshares, so the new user namespace is the owner's (what the
 * owner could make himself), and a helper running as the owner may enter it and act in its network. */
static void __attribute__((noreturn)) namespace_child(uid_t uid, gid_t gid, int tell, int wait, int wait_end)
{
        char c = 0;

        /* The copy of kilnd's end: without closing it, the read below would never see kilnd's close. */
        close(wait_end);
        if (syscall(SYS_setgroups, 0, NULL) < 0 || syscall(SYS_setresgid, gid, gid, gid) < 0 ||
            syscall(SYS_setresuid, uid, uid, uid) < 0)
                _exit(1);
        if (unshare(CLONE_NEWUSER | CLONE_NEWNET) < 0)
                _exit(2);
        if (write(tell, "u", 1) != 1)
                _exit(3);
        /* Alive until kilnd has bound the namespaces (or gave up: EOF). */
        (void)!read(wait, &c, 1);
        _exit(0);
}

/* GLib has reaped the namespace child (its status says nothing the run needs). */
static void on_namespace_child_exited(GPid pid, G_GNUC_UNUSED int status, G_GNUC_UNUSED gpointer data)
{
        kiln_reaper_unclaim(pid);
}

static gboolean make_namespaces(KilnNetwork *n, GError **error)
{
        int tell[2] = {-1, -1}, wait[2] = {-1, -1};
        g_autofree char *uid_map = g_strdup_printf("0 %u 1\n", (unsigned)n->uid);
        g_autofree char *gid_map = g_strdup_printf("0 %u 1\n", (unsigned)n->gid);
        gboolean ok = FALSE;
        char c = 0;
        pid_t pid;

        if (pipe2(tell, O_CLOEXEC) < 0 || pipe2(wait, O_CLOEXEC) < 0) {
                kiln_fail(error, KILN_ERROR_CODE_RUNTIME_FAILED, "pipe: %s", g_strerror(errno));
                goto out;
        }
        pid = fork();
        if (pid < 0) {
                kiln_fail(error, KILN_ERROR_CODE_RUNTIME_FAILED, "fork: %s", g_strerror(errno));
                goto out;
        }
        if (pid == 0)
                namespace_child(n->uid, n->gid, tell[1], wait[0], wait[1]);
        kiln_reaper_claim(pid); /* reaped by the child watch below */
        kiln_close_fdp(&tell[1]);
        kiln_close_fdp(&wait[0]);
        if (read(tell[0], &c, 1) != 1) {
                kiln_fail(error, KILN_ERROR_CODE_RUNTIME_FAILED,
                          "Cannot make the run's network namespace as user %u", (unsigned)n->uid);
        } else {
                /* Container root is the owner inside: the helper acts there as root, with no more
                 * than the owner has on the host. Written by kilnd, which may map any id; one id only. */
                ok = write_proc_file(pid, "uid_map", uid_map, error) &&
                     write_proc_file(pid, "gid_map", gid_map, error) &&
                     bind_namespace(pid, "user", n->userns_path, &n->userns_fd, error) &&
                     bind_namespace(pid, "net", n->netns_path, &n->netns_fd, error);
        }
        /* The child ends; it is reaped when it has, from the main loop: the bind mounts and descriptors
         * hold the namespaces, and the run need not wait for a process's exit to go on. */
        kiln_close_fdp(&wait[1]);
        g_child_watch_add(pid, on_namespace_child_exited, NULL);
out:
        for (int i = 0; i < 2; i++) {
                kiln_close_fdp(&tell[i]);
                kiln_close_fdp(&wait[i]);
        }
        return ok;
}

static void unbind(const char *path)
{
        if (!path)
                return;
        if (umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL && errno != ENOENT)
                g_warning("Cannot unmount %s: %s", path, g_strerror(errno));
        if (unlink(path) < 0 && errno != ENOENT)
                g_warning("Cannot remove %s: %s", path, g_strerror(errno));
}

static gid_t primary_gid(uid_t uid)
{
        struct passwd pw, *found = NULL;
        char buf[4096];

        /* An owner without an account (a uid only) gets the group of the same number. */
        if (getpwuid_r(uid, &pw, buf, sizeof(buf), &found) != 0 || !found)
                return (gid_t)uid;
        return found->pw_gid;
}

static gboolean spawn_helper(KilnNetwork *n, GError **error);
static void watch_routes(KilnNetwork *n);

/* The gate's FIFO, root's and 0600 in kilnd's own fresh bundle: only the runtime (root, or root in
 * kiln-runtime-ns's mount namespace, which keeps the bundle) opens it. */
static gboolean make_gate(KilnNetwork *n, GError **error)
{
        if (mkfifo(n->gate_path, 0600) < 0 ||
            (n->gate_fd = open(n->gate_path, O_RDWR | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC)) < 0)
                return kiln_fail(error, KILN_ERROR_CODE_RUNTIME_FAILED,
                                 "Network '%s': cannot make the gate %s: %s", helpers[n->helper].name,
                                 n->gate_path, g_strerror(errno));
        return TRUE;
}

KilnNetwork *kiln_network_new(const KilnConfig *config, const char *network, char **options, uid_t uid,
                              gid_t gid, const char *bundle, GError **error)
{
        g_autoptr(KilnNetwork) n = g_new0(KilnNetwork, 1);
        g_autoptr(GStrvBuilder) extra = g_strv_builder_new();
        int helper = helper_of(network);

        n->userns_fd = n->netns_fd = n->ready_fd = n->exit_fd = n->route_fd = n->gate_fd = -1;
        if (helper < 0) {
                kiln_invalid(error, "network", "'%s' needs no helper", network);
                return NULL;
        }
        n->helper = (Helper)helper;
        if (!translate_options(n->helper, options, extra, &n->host_loopback, error))
                return NULL;
        n->extra = g_strv_builder_end(extra);
        n->program =
                find_program(helper == HELPER_PASTA ? config->pasta_program : config->slirp4netns_program);
        if (!n->program) {
                kiln_fail(error, KILN_ERROR_CODE_RUNTIME_FAILED,
                          "Network '%s' needs the program %s (Debian package %s), which is not installed",
                          network,
                          helper == HELPER_PASTA ? config->pasta_program : config->slirp4netns_program,
                          helpers[helper].package);
                return NULL;
        }
        n->uid = uid;
        n->gid = gid == (gid_t)-1 ? primary_gid(uid) : gid;
        n->timeout_seconds = config->network_helper_timeout_seconds;
        n->userns_path = g_build_filename(bundle, "netns-user", NULL);
        n->netns_path = g_build_filename(bundle, "netns-net", NULL);
        n->record_path = g_build_filename(bundle, "network-helper", NULL);
        n->log_path = g_build_filename(bundle, "network-helper.log", NULL);
        n->gate_path = g_build_filename(bundle, "network-gate", NULL);
        n->gate_program = g_build_filename(config->helper_dir, "kiln-net-gate", NULL);
        if (!make_gate(n, error) || !make_namespaces(n, error))
                return NULL;
        return g_steal_pointer(&n);
}

const char *kiln_network_netns_path(const KilnNetwork *n)
{
        return n->netns_path;
}

void kiln_network_gate_hook(KilnNetwork *n, KilnHook *hook)
{
        n->gate_args[0] = n->gate_program;
        n->gate_args[1] = n->gate_path;
        n->gate_args[2] = NULL;
        /* kilnd decides within HelperTimeoutSeconds of the spawn, and a kilnd that dies ends the wait: the
         * hook's own timeout is a last bound only, past kilnd's. */
        *hook = (KilnHook){.stage = "createRuntime",
                           .path = n->gate_program,
                           .args = n->gate_args,
                           .env = NULL,
                           .timeout = (int)MIN(n->timeout_seconds + 10, 3600)};
}

const GError *kiln_network_failure(const KilnNetwork *n)
{
        return n->decided ? n->outcome : NULL;
}

/* The host's default IPv4 gateway (/proc/net/route): pasta copies the host's routes, so the container's
 * gateway is this address, and pasta maps it to the host's loopback. */
static char *host_gateway(void)
{
        g_autofree char *routes = NULL;
        g_auto(GStrv) lines = NULL;

        if (!g_file_get_contents("/proc/net/route", &routes, NULL, NULL))
                return NULL;
        lines = g_strsplit(routes, "\n", -1);
        for (char **l = lines; *l; l++) {
                char iface[64];
                unsigned dest, gateway, flags;
                char text[INET_ADDRSTRLEN];

                if (sscanf(*l, "%63s %x %x %x", iface, &dest, &gateway, &flags) == 4 && dest == 0 &&
                    (flags & 0x2) && inet_ntop(AF_INET, &gateway, text, sizeof(text)))
                        return g_strdup(text);
        }
        return NULL;
}

const char *kiln_network_host_address(const KilnNetwork *n)
{
        static char *gateway;

        if (!n->host_loopback)
                return NULL;
        if (n->helper == HELPER_SLIRP4NETNS)
                return "10.0.2.2";
        /* Routes change rarely; read once per kilnd (the main thread prepares every run). */
        if (!gateway)
                gateway = host_gateway();
        return gateway;
}

const char *kiln_network_nameserver(const KilnNetwork *n)
{
        return n->helper == HELPER_SLIRP4NETNS ? "10.0.2.3" : NULL;
}

/* ---- the helper ---- */

typedef struct {
        uid_t uid;
        gid_t gid;
        gboolean drop;
} ChildSetup;

/* Between fork and exec: system calls only. slirp4netns has no option to drop to a user, so it is started
 * as the owner; pasta drops itself (--runas) before it opens anything. Either dies with kilnd's main
 * thread, where the spawn happens (pasta's switch of user clears this, the start-up clean-up covers it). */
static void child_setup(gpointer data)
{
        const ChildSetup *s = data;

        if (s->drop &&
            (syscall(SYS_setgroups, 0, NULL) < 0 || syscall(SYS_setresgid, s->gid, s->gid, s->gid) < 0 ||
             syscall(SYS_setresuid, s->uid, s->uid, s->uid) < 0))
                _exit(126);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
}

static char **helper_argv(const KilnNetwork *n)
{
        g_autoptr(GStrvBuilder) argv = g_strv_builder_new();

        g_strv_builder_add(argv, n->program);
        if (n->helper == HELPER_PASTA) {
                /* No port forwarding in either direction (a build needs none); the gateway address stays
                 * mapped to the host's loopback unless no_map_gw. /proc/self/fd paths: the helper runs as
                 * the owner, who could not open the bundle's files. */
                g_strv_builder_add_many(argv, "--config-net", "--foreground", "--quiet", "--userns",
                                        "/proc/self/fd/3", "--netns", "/proc/self/fd/4", "--no-netns-quit",
                                        "-t", "none", "-u", "none", "-T", "none", "-U", "none", "--pid",
                                        "/proc/self/fd/5", NULL);
                add_owned(argv, g_strdup_printf("--runas=%u:%u", (unsigned)n->uid, (unsigned)n->gid));
        } else {
                /* --enable-sandbox is left out: slirp4netns 1.2 cannot set it up for a namespace given by
                 * path (setegid(0) fails); it runs as the owner, without capabilities on the host. */
                g_strv_builder_add_many(argv, "--configure", "--mtu=65520", "--userns-path=/proc/self/fd/3",
                                        "--netns-type=path", "--enable-seccomp", "--ready-fd=5",
                                        "--exit-fd=6", NULL);
                if (!n->host_loopback)
                        g_strv_builder_add(argv, "--disable-host-loopback");
        }
        g_strv_builder_addv(argv, (const char **)n->extra);
        if (n->helper == HELPER_SLIRP4NETNS)
                g_strv_builder_add_many(argv, "/proc/self/fd/4", "tap0", NULL);
        return g_strv_builder_end(argv);
}

static void stop_waiting(KilnNetwork *n)
{
        if (n->ready_source)
                g_source_remove(n->ready_source);
        if (n->timeout_source)
                g_source_remove(n->timeout_source);
        if (n->cancel_idle)
                g_source_remove(n->cancel_idle);
        if (n->route_source)
                g_source_remove(n->route_source);
        n->ready_source = n->timeout_source = n->cancel_idle = n->route_source = 0;
        if (n->cancel_handler)
                g_cancellable_disconnect(n->cancellable, n->cancel_handler);
        n->cancel_handler = 0;
        g_clear_object(&n->cancellable);
        kiln_close_fdp(&n->route_fd);
        /* The ready pipe stays open until the helper is killed: pasta, ready by its routes, writes its
         * pid later, and a pipe without a reader would kill it (SIGPIPE). */
}

/* SIGKILL, then either wait (@wait: a failed start, whose caller is told nothing is left) or let GLib's
 * child watch reap it (the end of a run). Not waiting is safe: from the signal on, the helper runs no
 * instruction of its own any more — what is left is the kernel closing its descriptors and tearing down its
 * tap device, which is what makes the exit take tens of milliseconds, and the kernel finishes it whatever
 * kilnd does next (a kilnd that crashes now leaves a zombie for init, not a helper). The GSubprocess keeps
 * itself alive until it is reaped, and its reaper claim with it (base/reaper.h). */
static void kill_helper(KilnNetwork *n, gboolean wait)
{
        if (!n->process)
                return;
        g_subprocess_force_exit(n->process);
        if (wait)
                (void)g_subprocess_wait(n->process, NULL, NULL);
        g_clear_object(&n->process);
        if (n->record_path)
                (void)unlink(n->record_path);
}

/* What the helper said before it failed, bounded, for the caller's error. */
static char *helper_log(const KilnNetwork *n)
{
        g_autofree char *text = NULL;
        gsize len = 0;

        if (!g_file_get_contents(n->log_path, &text, &len, NULL) || len == 0)
                return g_strdup("");
        if (len > LOG_MAX)
                text[LOG_MAX] = '\0';
        g_strstrip(text);
        return g_strdup_printf(": %s", g_strdelimit(text, "\n", ' '));
}

/* The helper is ready (@error NULL) or failed, once: the gate is told, which lets the runtime exec the
 * command or fails its start (the run's error is then @error, kiln_network_failure()). The runtime may be
 * anywhere in its start-up, or not started yet: the byte waits in the FIFO. */
static void decide(KilnNetwork *n, const GError *error)
{
        char word = error ? 'f' : 'r';

        stop_waiting(n);
        if (n->decided)
                return;
        n->decided = TRUE;
        n->outcome = error ? g_error_copy(error) : NULL;
        /* One byte into an empty FIFO of this run's: it cannot block or be short. */
        if (write(n->gate_fd, &word, 1) != 1)
                g_warning("Cannot tell the network's gate: %s", g_strerror(errno));
}

static void fail_start(KilnNetwork *n, const char *why)
{
        g_autoptr(GError) error = NULL;
        g_autofree char *log = NULL;

        stop_waiting(n);
        kill_helper(n, TRUE);
        log = helper_log(n);
        error = g_error_new(KILN_ERROR, KILN_ERROR_CODE_RUNTIME_FAILED,
                            "Network '%s': the helper %s (Debian package %s) %s%s", helpers[n->helper].name,
                            helpers[n->helper].name, helpers[n->helper].package, why, log);
        decide(n, error);
}

/* Readiness is the helper's own word on a pipe, watched by the main loop: no polling, no sleep. */
static gboolean on_ready(int fd, G_GNUC_UNUSED GIOCondition condition, gpointer data)
{
        KilnNetwork *n = data;
        char buf[32];
        ssize_t r = read(fd, buf, sizeof(buf));

        if (r < 0 && (errno == EINTR || errno == EAGAIN))
                return G_SOURCE_CONTINUE;
        n->ready_source = 0; /* removed by returning G_SOURCE_REMOVE */
        if (r <= 0) {
                fail_start(n, "ended before it was ready");
                return G_SOURCE_REMOVE;
        }
        decide(n, NULL);
        return G_SOURCE_REMOVE;
}

static gboolean on_timeout(gpointer data)
{
        KilnNetwork *n = data;
        g_autofree char *why = g_strdup_printf("was not ready within %u seconds", n->timeout_seconds);

        n->timeout_source = 0;
        fail_start(n, why);
        return G_SOURCE_REMOVE;
}

static gboolean on_cancelled_idle(gpointer data)
{
        KilnNetwork *n = data;

        n->cancel_idle = 0;
        if (!n->decided)
                fail_start(n, "was stopped: the run was cancelled");
        return G_SOURCE_REMOVE;
}

static void on_cancelled(G_GNUC_UNUSED GCancellable *cancellable, gpointer data)
{
        KilnNetwork *n = data;

        /* Not from inside the emission: fail_start disconnects this handler. */
        if (!n->cancel_idle)
                n->cancel_idle = g_idle_add(on_cancelled_idle, n);
}

/* "PID STARTTIME": a later kilnd kills the helper only while it is still this process. */
static void write_record(KilnNetwork *n)
{
        const char *id = g_subprocess_get_identifier(n->process);
        g_autofree char *stat_path = id ? g_strdup_printf("/proc/%s/stat", id) : NULL;
        g_autofree char *stat = NULL, *record = NULL;
        const char *end;
        unsigned long long start = 0;

        if (!stat_path || !g_file_get_contents(stat_path, &stat, NULL, NULL) ||
            !(end = strrchr(stat, ')')) ||
            sscanf(end + 2,
                   "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
                   &start) != 1)
                return;
        record = g_strdup_printf("%s %llu\n", id, start);
        (void)g_file_set_contents_full(n->record_path, record, -1, G_FILE_SET_CONTENTS_NONE, 0600, NULL);
}

/* Starts the helper, from kiln_network_start() right after the runtime's spawn: its own start-up (tens of
 * milliseconds of pasta's) runs while the runtime's does. Readiness or failure is decided in the main loop
 * and told to the gate. */
static gboolean spawn_helper(KilnNetwork *n, GError **error)
{
        g_autoptr(GSubprocessLauncher) launcher =
                g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDOUT_SILENCE);
        g_autoptr(GError) spawn_error = NULL;
        g_auto(GStrv) argv = helper_argv(n);
        ChildSetup setup = {n->uid, n->gid, n->helper == HELPER_SLIRP4NETNS};
        int ready_pipe[2] = {-1, -1}, exit_pipe[2] = {-1, -1};
        int userns = fcntl(n->userns_fd, F_DUPFD_CLOEXEC, 3), netns = fcntl(n->netns_fd, F_DUPFD_CLOEXEC, 3);

        if (userns < 0 || netns < 0 || pipe2(ready_pipe, O_CLOEXEC) < 0 || pipe2(exit_pipe, O_CLOEXEC) < 0) {
                int saved = errno;
                kiln_close_fdp(&userns);
                kiln_close_fdp(&netns);
                for (int i = 0; i < 2; i++) {
                        kiln_close_fdp(&ready_pipe[i]);
                        kiln_close_fdp(&exit_pipe[i]);
                }
                return kiln_fail(error, KILN_ERROR_CODE_RUNTIME_FAILED,
                                 "Network '%s': the helper %s (Debian package %s) could not be given its "
                                 "descriptors: %s",
                                 helpers[n->helper].name, helpers[n->helper].name,
                                 helpers[n->helper].package, g_strerror(saved));
        }
        /* pasta opens the --pid path after it switched to the owner: the pipe must be the owner's. Safe:
         * the pipe is this run's, nothing else holds it. */
        if (fchown(ready_pipe[1], n->uid, n->gid) < 0)
                g_debug("fchown of the ready pipe: %s", g_strerror(errno));
        g_subprocess_launcher_take_fd(launcher, userns, FD_USERNS);
        g_subprocess_launcher_take_fd(launcher, netns, FD_NETNS);
        g_subprocess_launcher_take_fd(launcher, ready_pipe[1], FD_READY);
        g_subprocess_launcher_take_fd(launcher, exit_pipe[0], FD_EXIT);
        n->ready_fd = ready_pipe[0];
        n->exit_fd = exit_pipe[1];
        g_subprocess_launcher_set_cwd(launcher, "/");
        g_subprocess_launcher_set_stderr_file_path(launcher, n->log_path);
        g_subprocess_launcher_set_child_setup(launcher, child_setup, &setup, NULL);
        n->process = g_subprocess_launcher_spawnv(launcher, (const char *const *)argv, &spawn_error);
        /* The launcher keeps the child's ends until it is freed; they must not stay open here, or a helper
         * that dies would never be seen to. */
        g_clear_object(&launcher);
        if (!n->process)
                return kiln_fail(error, KILN_ERROR_CODE_RUNTIME_FAILED,
                                 "Network '%s': the helper %s (Debian package %s) could not be started: %s",
                                 helpers[n->helper].name, helpers[n->helper].name,
                                 helpers[n->helper].package, spawn_error->message);
        kiln_reaper_claim_subprocess(n->process);
        write_record(n);
        g_unix_set_fd_nonblocking(n->ready_fd, TRUE, NULL);
        n->ready_source = g_unix_fd_add(n->ready_fd, G_IO_IN | G_IO_HUP | G_IO_ERR, on_ready, n);
        n->timeout_source = g_timeout_add_seconds(n->timeout_seconds, on_timeout, n);
        return TRUE;
}

/* ---- pasta's readiness by its routes ----
 *
 * pasta writes its pid file only at the very end of its start-up; most of that start-up (this version
 * fills some 30 MB of frame buffers and opens pools of sockets and pipes) comes after it has configured
 * the namespace (link, addresses, then the default routes it copies from the host, IPv4 first). From the
 * last default route on, the namespace is as the command will use it, and pasta holds the tap device
 * open: what the command sends before pasta's loop runs waits in the device's queue and is answered once
 * it does (an ARP request, a SYN: both well within their first retransmission timer). So the run may
 * start at the last default route; the pid file stays the readiness when no route is expected or none
 * comes, and an end of the helper before either is still a failure. */

/* Whether the host has a default route of @family (pasta copies the host's, IPv6 from
 * /proc/net/ipv6_route: destination ::/0 through a gateway, not lo's unreachable one). */
static gboolean host_has_default_route(int family)
{
        g_autofree char *table = NULL;
        g_auto(GStrv) lines = NULL;

        if (family == AF_INET) {
                g_autofree char *gateway = host_gateway();
                return gateway != NULL;
        }
        if (!g_file_get_contents("/proc/net/ipv6_route", &table, NULL, NULL))
                return FALSE;
        lines = g_strsplit(table, "\n", -1);
        for (char **l = lines; *l; l++) {
                char dest[33], dev[64];
                unsigned plen, flags;

                if (sscanf(*l, "%32s %x %*s %*x %*s %*x %*x %*x %x %63s", dest, &plen, &flags, dev) == 4 &&
                    plen == 0 && strspn(dest, "0") == 32 && (flags & 0x2) && !g_str_equal(dev, "lo"))
                        return TRUE;
        }
        return FALSE;
}

/* A netlink socket is bound to the network namespace of the thread that makes it: this thread enters the
 * run's namespace, makes the socket and ends (kilnd's own threads never change namespace). */
static gpointer route_socket_thread(gpointer data)
{
        int netns = GPOINTER_TO_INT(data), fd;
        struct sockaddr_nl addr = {.nl_family = AF_NETLINK,
                                   .nl_groups = RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE};

        if (setns(netns, CLONE_NEWNET) < 0)
                return GINT_TO_POINTER(-1);
        fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
        if (fd >= 0 && bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
                kiln_close_fdp(&fd);
        return GINT_TO_POINTER(fd);
}

static void route_ready_maybe(KilnNetwork *n)
{
        if ((!n->want_v4 || n->seen_v4) && (!n->want_v6 || n->seen_v6))
                decide(n, NULL);
}

static gboolean on_route(int fd, G_GNUC_UNUSED GIOCondition condition, gpointer data)
{
        KilnNetwork *n = data;
        char buf[8192] __attribute__((aligned(NLMSG_ALIGNTO)));
        ssize_t len;

        while ((len = recv(fd, buf, sizeof(buf), 0)) > 0) {
                for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)len);
                     h = NLMSG_NEXT(h, len)) {
                        const struct rtmsg *rt = NLMSG_DATA(h);

                        if (h->nlmsg_type != RTM_NEWROUTE || h->nlmsg_len < NLMSG_LENGTH(sizeof(*rt)) ||
                            rt->rtm_dst_len != 0 || rt->rtm_table != RT_TABLE_MAIN)
                                continue;
                        if (rt->rtm_family == AF_INET)
                                n->seen_v4 = TRUE;
                        else if (rt->rtm_family == AF_INET6)
                                n->seen_v6 = TRUE;
                }
        }
        if (len == 0 || (len < 0 && errno != EAGAIN && errno != EINTR)) {
                /* Lost the watch (ENOBUFS: too much at once): the pid file will say it. */
                n->route_source = 0;
                kiln_close_fdp(&n->route_fd);
                return G_SOURCE_REMOVE;
        }
        route_ready_maybe(n); /* may remove this source through stop_waiting() */
        return n->route_source ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

/* Best effort: without the watch, the pid file is the readiness, as for slirp4netns. */
static void watch_routes(KilnNetwork *n)
{
        GThread *thread;

        n->want_v4 = !g_strv_contains((const char *const *)n->extra, "--ipv6-only") &&
                     host_has_default_route(AF_INET);
        n->want_v6 = !g_strv_contains((const char *const *)n->extra, "--ipv4-only") &&
                     host_has_default_route(AF_INET6);
        if (!n->want_v4 && !n->want_v6)
                return;
        thread = g_thread_try_new("kiln-netns-route", route_socket_thread, GINT_TO_POINTER(n->netns_fd),
                                  NULL);
        if (!thread)
                return;
        n->route_fd = GPOINTER_TO_INT(g_thread_join(thread));
        if (n->route_fd < 0)
                return;
        n->route_source = g_unix_fd_add(n->route_fd, G_IO_IN | G_IO_HUP | G_IO_ERR, on_route, n);
}

void kiln_network_start(KilnNetwork *n, GCancellable *cancellable)
{
        g_autoptr(GError) error = NULL;

        /* After the runtime's spawn: kilnd's fork and exec of the helper (a few ms) then overlap the
         * runtime's start-up instead of coming before it. The route watch before the spawn, so that no
         * route is missed. A spawn that fails fails the gate, and the run with this error. */
        if (n->helper == HELPER_PASTA)
                watch_routes(n);
        if (!spawn_helper(n, &error)) {
                decide(n, error);
                return;
        }
        if (cancellable) {
                n->cancellable = g_object_ref(cancellable);
                n->cancel_handler = g_cancellable_connect(cancellable, G_CALLBACK(on_cancelled), n, NULL);
        }
}

void kiln_network_free(KilnNetwork *n)
{
        if (!n)
                return;
        stop_waiting(n);
        kill_helper(n, FALSE);
        /* A gate still waiting (a runtime still starting) sees the end of file: it fails. */
        kiln_close_fdp(&n->gate_fd);
        if (n->gate_path)
                (void)unlink(n->gate_path);
        kiln_close_fdp(&n->ready_fd);
        kiln_close_fdp(&n->exit_fd);
        kiln_close_fdp(&n->userns_fd);
        kiln_close_fdp(&n->netns_fd);
        unbind(n->netns_path);
        unbind(n->userns_path);
        if (n->log_path)
                (void)unlink(n->log_path);
        g_clear_error(&n->outcome);
        g_free(n->program);
        g_strfreev(n->extra);
        g_free(n->userns_path);
        g_free(n->netns_path);
        g_free(n->record_path);
        g_free(n->log_path);
        g_free(n->gate_path);
        g_free(n->gate_program);
        g_free(n);
}

/* ---- start-up ---- */

static void kill_recorded(const char *path)
{
        g_autofree char *record = NULL, *stat_path = NULL, *stat = NULL;
        unsigned long long start = 0, now = 0;
        const char *end;
        int pid = 0;
        _cleanup_close_ int pidfd = -1;

        if (!g_file_get_contents(path, &record, NULL, NULL) ||
            sscanf(record, "%d %llu", &pid, &start) != 2 || pid <= 1)
                return;
        /* The pidfd first, then the check: the process the pidfd names is the one checked and killed. */
        pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (pidfd < 0)
                return;
        stat_path = g_strdup_printf("/proc/%d/stat", pid);
        if (!g_file_get_contents(stat_path, &stat, NULL, NULL) || !(end = strrchr(stat, ')')) ||
            sscanf(end + 2,
                   "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
                   &now) != 1 ||
            now != start)
                return;
        if (syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) == 0)
                g_message("Killed a network helper left by an earlier kilnd (pid %d)", pid);
}

void kiln_network_cleanup_stale(const char *bundles_dir)
{
        g_autoptr(GDir) dir = g_dir_open(bundles_dir, 0, NULL);
        const char *name;

        while (dir && (name = g_dir_read_name(dir))) {
                g_autofree char *path = g_build_filename(bundles_dir, name, "network-helper", NULL);
                kill_recorded(path);
        }
}

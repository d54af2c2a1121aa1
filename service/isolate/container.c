/* SPDX-License-Identifier: Apache-2.0 */
/* The parent and the init. kiln-isolate is single-threaded, so the init — a clone(2) of the parent —
 * may run ordinary code (allocate, format errors) until it execs.
 *
 * The protocol, over a SOCK_SEQPACKET pair (close-on-exec on both ends):
 *   parent: clone → [user namespace maps] → [oom_score_adj] → rlimits → GO (with the init's pid) →
 *           [cgroup made → v1: its tasks files (CGROUP_FDS) | v2: the init moved → CGROUP] → [on HOOKS:
 *           prestart and createRuntime hooks → HOOKS_DONE] → READY → [after the execve: poststart hooks]
 *   init:   wait for GO → namespace root → other namespaces → [wait for CGROUP; v1: move itself] →
 *           file system up to pivot_root → [HOOKS, wait for HOOKS_DONE] → [createContainer hooks] →
 *           pivot_root and the rest → [cgroup namespace] → terminal → capabilities, user → look the
 *           command up → READY (create: wait for `start`) → [startContainer hooks] → seccomp → execve
 * The parent makes the cgroup while the init makes its namespaces: the two are the slowest steps before
 * the mounts, and on two processors they overlap (docs/performance.md, "The sixth round").
 * Any failure of the init is one ERROR message (its exit code and text) and the init exits with that
 * code. After READY the parent of a run keeps listening: an error before the exec still arrives, and
 * the end of the stream means the exec happened. */
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/fd-passing.h"
#include "isolate.h"

enum { MSG_GO = 1, MSG_READY, MSG_ERROR, MSG_CGROUP, MSG_CGROUP_FDS, MSG_HOOKS, MSG_HOOKS_DONE };

#define MSG_TEXT_MAX 4000

typedef struct SyncMsg {
        gint32 type;
        gint32 code;
        char text[MSG_TEXT_MAX];
} SyncMsg;

static gboolean sync_send(int fd, int type, int code, const char *text)
{
        SyncMsg m = {.type = type, .code = code};
        size_t len = 0;

        if (text) {
                len = MIN(strlen(text), sizeof(m.text) - 1);
                memcpy(m.text, text, len);
        }
        return send(fd, &m, offsetof(SyncMsg, text) + len, MSG_NOSIGNAL) >= 0;
}

/* 0 at the end of the stream, -1 on error, else the type; m->text NUL-terminated. */
static int sync_recv(int fd, SyncMsg *m)
{
        ssize_t n;

        do
                n = recv(fd, m, sizeof(*m) - 1, 0);
        while (n < 0 && errno == EINTR);
        if (n <= 0)
                return (int)n;
        if ((size_t)n < offsetof(SyncMsg, text))
                return -1;
        ((char *)m)[n] = '\0';
        return m->type;
}

/* ---- the init ---- */

typedef struct Init {
        const IsoLaunch *launch;
        const IsoSpec *spec;
        GArray *cgroup_dirs; /* the run's cgroup, found by the parent before the clone; or NULL */
        int sync_fd;
        int unshare_flags;
        pid_t host_pid; /* the init's pid as the parent sees it (GO): the hooks' state shows it */
        char *command;  /* resolved argv[0] */
} Init;

static gboolean init_uts(const IsoSpec *spec, GError **error)
{
        /* Safe: the UTS namespace is the container's own (spec-read.c insists on a new one). */
        if (spec->hostname && *spec->hostname && sethostname(spec->hostname, strlen(spec->hostname)) < 0)
                return iso_fail_errno(error, errno, "sethostname '%s'", spec->hostname);
        if (spec->domainname && *spec->domainname &&
            setdomainname(spec->domainname, strlen(spec->domainname)) < 0)
                return iso_fail_errno(error, errno, "setdomainname '%s'", spec->domainname);
        return TRUE;
}

/* The stages before pivot_root: prestart and createRuntime by the parent (the runtime's namespaces),
 * then createContainer here, in the container's, as runc orders them. */
static gboolean init_hooks_before_pivot(Init *init, GError **error)
{
        const IsoSpec *spec = init->spec;
        SyncMsg m;

        if (spec->n_hooks[ISO_HOOK_PRESTART] || spec->n_hooks[ISO_HOOK_CREATE_RUNTIME]) {
                if (!sync_send(init->sync_fd, MSG_HOOKS, 0, NULL))
                        return iso_fail(error, "the parent went away before the prestart hooks");
                if (sync_recv(init->sync_fd, &m) != MSG_HOOKS_DONE)
                        return iso_fail(error, "the parent went away during the prestart hooks");
        }
        return iso_hooks_run(spec, ISO_HOOK_CREATE_CONTAINER, init->launch->id, "creating", init->host_pid,
                             error);
}

static gboolean init_file_system(Init *init, GError **error)
{
        IsoRoot root = {
                .spec = init->spec,
                .cgroup_dirs = init->cgroup_dirs,
                .rootfd = -1,
                .in_userns = init->spec->ns[ISO_NS_USER].present,
                .null_tree = -1,
        };
        gboolean ok = iso_null_prepare(&root, error) && iso_mounts_prepare_root(&root, error) &&
                      iso_mounts_apply(&root, error) && iso_dev_populate(&root, error) &&
                      iso_sysctl_apply(init->spec, error) && init_hooks_before_pivot(init, error) &&
                      iso_pivot(&root, init->launch->no_pivot, error) && iso_readonly_paths(&root, error) &&
                      iso_masked_paths(&root, error) && iso_root_readonly(init->spec, error);

        kiln_close_fdp(&root.rootfd);
        kiln_close_fdp(&root.null_tree);
        return ok;
}

/* runc's order: the working directory is entered with the setup's privileges when it can be (a
 * directory the user cannot enter still works as a cwd), and again as the user otherwise. */
static gboolean init_credentials(Init *init, GError **error)
{
        const IsoSpec *spec = init->spec;
        const IsoSeccomp *seccomp = init->launch->seccomp;
        bool cwd_done;

        /* Without no_new_privs the kernel only lets a privileged process load a filter: load it now,
         * while CAP_SYS_ADMIN is held; what follows must then pass it, as under runc. */
        if (!spec->no_new_privileges && !iso_seccomp_load(seccomp, error))
                return FALSE;
        if (!iso_caps_drop_bounding(spec->cap_bounding, error))
                return FALSE;
        cwd_done = chdir(spec->cwd) == 0;
        if (!cwd_done && errno != EACCES && errno != EPERM)
                return iso_fail_errno(error, errno, "chdir '%s'", spec->cwd);
        if (!iso_user_switch(spec, error) || !iso_caps_apply(spec, error))
                return FALSE;
        /* A change of credentials resets "dumpable" to fs.suid_dumpable, which may be 1: the init still
         * holds descriptors of the setup (and, in create mode, waits), so it stays undumpable until
         * execve. */
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
                return iso_fail_errno(error, errno, "prctl PR_SET_DUMPABLE");
        if (!cwd_done && chdir(spec->cwd) < 0)
                return iso_fail_errno(error, errno, "chdir '%s' as uid %u", spec->cwd, (unsigned)spec->uid);
        /* Safe by nature: no_new_privs can only be set, never cleared. */
        if (spec->no_new_privileges && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return iso_fail_errno(error, errno, "prctl PR_SET_NO_NEW_PRIVS");
        return TRUE;
}

/* One message, and the descriptors it carries appended to @fds (at most @max in all; more is an error). */
static int sync_recv_fds(int fd, SyncMsg *m, GArray *fds, guint max)
{
        int got[KILN_FDS_MAX];
        size_t n = 0;
        int flags = 0;
        ssize_t len;

        do
                len = kiln_recv_fds(fd, m, sizeof(*m) - 1, got, KILN_FDS_MAX, &n, 0, &flags);
        while (len < 0 && errno == EINTR);
        g_array_append_vals(fds, got, (guint)n);
        if (len <= 0)
                return (int)len;
        if ((size_t)len < offsetof(SyncMsg, text) || (flags & MSG_CTRUNC) || fds->len > max)
                return -1;
        ((char *)m)[len] = '\0';
        return m->type;
}

/* The parent makes the run's cgroup while the init makes its namespaces (parent_make_cgroup()); the init
 * waits for it before its file system (a v1 one binds the cgroup's directories), so that its hooks and
 * everything of the container's count against the run's limits. On cgroup v1 the parent sends the tasks
 * file of each hierarchy and the init moves itself: "0" written to it, a move that takes no machine-wide
 * lock (docs/decisions.md, "The init moves itself into its cgroup"); on cgroup v2 the parent moved it. */
static gboolean init_wait_cgroup(Init *init, GError **error)
{
        g_autoptr(GArray) fds = kiln_fd_array_new();
        g_autoptr(GError) local = NULL;
        SyncMsg m;
        int r;

        while ((r = sync_recv_fds(init->sync_fd, &m, fds, init->cgroup_dirs->len)) == MSG_CGROUP_FDS)
                ;
        if (r != MSG_CGROUP)
                return iso_fail(error, "the parent went away before the init was in its cgroup");
        if (kiln_cgroup_unified())
                return TRUE;
        if (fds->len != init->cgroup_dirs->len)
                return iso_fail(error, "cgroup: %u tasks files for %u hierarchies", fds->len,
                                init->cgroup_dirs->len);
        if (!kiln_cgroup_join_self(init->cgroup_dirs, fds, &local))
                return iso_fail(error, "%s", local->message);
        return TRUE;
}

/* Once in the run's cgroup: the namespace's root is the cgroup the init is in. On cgroup v2 that comes
 * before the mounts (a new cgroup2 mount shows the namespace's root), on v1 after them (the init binds
 * the host's directories). Safe: a cgroup namespace only narrows what the init sees of the cgroup tree. */
static gboolean init_cgroupns(GError **error)
{
        if (unshare(CLONE_NEWCGROUP) < 0)
                return iso_fail_errno(error, errno, "unshare the cgroup namespace");
        return TRUE;
}

static gboolean init_setup(Init *init, GError **error)
{
        const IsoSpec *spec = init->spec;
        bool cgroup = init->cgroup_dirs != NULL, unified = cgroup && kiln_cgroup_unified();
        bool late_cgroupns = cgroup && (init->unshare_flags & CLONE_NEWCGROUP);
        int flags = init->unshare_flags & ~(late_cgroupns ? CLONE_NEWCGROUP : 0);
        SyncMsg m;

        if (sync_recv(init->sync_fd, &m) != MSG_GO)
                return iso_fail(error, "the parent went away before the setup");
        init->host_pid = m.code;
        if (!iso_user_become_ns_root(spec, error))
                return FALSE;
        /* The namespaces not made by the clone are made now, by the namespace's root: what they create
         * at once (the IPC namespace's mqueue file system) then belongs to a mapped user. */
        if (flags && unshare(flags) < 0)
                return iso_fail_errno(error, errno, "unshare (0x%x)", (unsigned)flags);
        if (!init_uts(spec, error))
                return FALSE;
        if (cgroup && !init_wait_cgroup(init, error))
                return FALSE;
        if (late_cgroupns && unified && !init_cgroupns(error))
                return FALSE;
        if (!init_file_system(init, error))
                return FALSE;
        if (late_cgroupns && !unified && !init_cgroupns(error))
                return FALSE;
        if (spec->has_umask)
                umask(spec->umask);
        if (spec->terminal) {
                if (!iso_terminal_setup(spec, init->launch->console_fd, error))
                        return FALSE;
        } else if (setsid() < 0) {
                return iso_fail_errno(error, errno, "setsid");
        }
        if (!init_credentials(init, error))
                return FALSE;
        init->command = iso_exec_lookup(spec, error);
        return init->command != NULL;
}

/* Reports @error to the parent (or, when it is gone, on stderr) and returns the exit code. */
static int init_report(const Init *init, const GError *error)
{
        if (!sync_send(init->sync_fd, MSG_ERROR, error->code, error->message)) {
                fprintf(stderr, "kiln-isolate: %s\n", error->message);
                fflush(stderr);
        }
        return error->code;
}

static int init_main(const IsoLaunch *launch, GArray *cgroup_dirs, int sync_fd, int unshare_flags)
{
        Init init = {.launch = launch,
                     .spec = launch->spec,
                     .cgroup_dirs = cgroup_dirs,
                     .sync_fd = sync_fd,
                     .unshare_flags = unshare_flags};
        g_autoptr(GError) error = NULL;
        int code;

        if (!init_setup(&init, &error))
                return init_report(&init, error);
        if (!sync_send(sync_fd, MSG_READY, 0, NULL))
                return ISO_EXIT_SETUP;
        if (launch->mode == ISO_MODE_CREATE) {
                if (!iso_wait_for_start(launch->start_fd, &error))
                        return init_report(&init, error);
        } else if (launch->mode == ISO_MODE_RUN) {
                /* A run ends with its parent: after the credentials changed (which resets it). */
                (void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        }
        /* As runc: after `start`, with the command's credentials, just before its execve. */
        if (!iso_hooks_run(launch->spec, ISO_HOOK_START_CONTAINER, launch->id, "created", init.host_pid,
                           &error))
                return init_report(&init, error);
        /* Every descriptor of ours is close-on-exec already; this catches any that a library opened
         * without. Only stdio (or the terminal) reaches the command. */
        (void)close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
        if (launch->spec->no_new_privileges && !iso_seccomp_load(launch->seccomp, &error))
                return init_report(&init, error);
        code = iso_exec(init.command, launch->spec, &error);
        init_report(&init, error);
        g_free(init.command);
        return code;
}

/* ---- the parent ---- */

/* Joins the namespaces given by path, before the clone: the init is then born in them (a PID namespace
 * only applies to children), and the parent still has the privilege that joining takes — the init,
 * inside a new user namespace, would not. */
static gboolean join_namespaces(const IsoSpec *spec, GError **error)
{
        for (int i = 0; i < ISO_NS_COUNT; i++) {
                const IsoNamespace *ns = &spec->ns[i];
                _cleanup_close_ int fd = -1;

                if (!ns->present || !ns->path)
                        continue;
                if (i == ISO_NS_USER || i == ISO_NS_MOUNT)
                        return iso_fail(error, "config.json: joining a %s namespace is not supported",
                                        iso_ns_name(i));
                fd = open(ns->path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        return iso_fail_errno(error, errno, "open %s namespace '%s'", iso_ns_name(i),
                                              ns->path);
                /* Safe: kilnd put the path in the spec (an `ns:` option it authorized, or the network
                 * namespace it made itself for pasta or slirp4netns, in the run's bundle). */
                if (setns(fd, iso_ns_clone_flag(i)) < 0)
                        return iso_fail_errno(error, errno, "join %s namespace '%s'", iso_ns_name(i),
                                              ns->path);
        }
        return TRUE;
}

/* After GO, while the init makes its namespaces: the run's cgroup with its limits written; then on cgroup
 * v1 the tasks file of each hierarchy for the init to move itself, on v2 the init moved into it; then
 * CGROUP. Safe: the directories are kilnd's (linux.cgroupsPath, checked to be plain names under this
 * process's own cgroup or the hierarchy's root), and the init writes only "0" (itself) to the files and
 * closes them before anything of the container's runs. */
static gboolean parent_make_cgroup(pid_t pid, const IsoSpec *spec, GArray *dirs, int sync_fd, GError **error)
{
        g_autoptr(GArray) tasks_fds = NULL;
        g_autoptr(GError) local = NULL;

        if (!kiln_cgroup_create(dirs, spec->cgroups_path, &spec->limits, &local))
                return iso_fail(error, "%s", local->message);
        if (kiln_cgroup_unified()) {
                if (!kiln_cgroup_join(dirs, pid, &local))
                        return iso_fail(error, "%s", local->message);
        } else {
                tasks_fds = kiln_cgroup_open_tasks(dirs, &local);
                if (!tasks_fds)
                        return iso_fail(error, "%s", local->message);
                for (guint i = 0; i < tasks_fds->len; i += KILN_FDS_MAX) {
                        SyncMsg m = {.type = MSG_CGROUP_FDS};

                        /* An init that failed meanwhile is gone; its error is the next message to read. */
                        (void)kiln_send_fds(sync_fd, &m, offsetof(SyncMsg, text),
                                            &g_array_index(tasks_fds, int, i),
                                            MIN(KILN_FDS_MAX, tasks_fds->len - i));
                }
        }
        (void)sync_send(sync_fd, MSG_CGROUP, 0, NULL);
        return TRUE;
}

static gboolean parent_configure(pid_t pid, const IsoSpec *spec, GError **error)
{
        if (spec->ns[ISO_NS_USER].present && !iso_user_write_maps(pid, spec, error))
                return FALSE;
        if (spec->has_oom_score_adj) {
                g_autofree char *dir = g_strdup_printf("/proc/%d", (int)pid);
                g_autofree char *value = g_strdup_printf("%d", spec->oom_score_adj);
                _cleanup_close_ int dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
                if (dirfd < 0 || !iso_write_file(dirfd, "oom_score_adj", value, error))
                        return dirfd < 0 ? iso_fail_errno(error, errno, "open '%s'", dir) : FALSE;
        }
        return iso_rlimits_apply(pid, spec, error);
}

static void reap(pid_t pid, int *status)
{
        int s = 0;

        while (waitpid(pid, &s, __WALL) < 0 && errno == EINTR)
                ;
        if (status)
                *status = s;
}

gboolean iso_container_launch(const IsoLaunch *launch, pid_t *ret_pid, GError **error)
{
        const IsoSpec *spec = launch->spec;
        int new_ns = iso_spec_new_namespaces(spec);
        int flags = new_ns & (CLONE_NEWUSER | CLONE_NEWPID);
        g_autoptr(GArray) cgroup_dirs = NULL;
        g_autoptr(GError) local = NULL;
        int sync[2], status;
        SyncMsg m;
        pid_t pid;
        int r;

        /* Found from our own cgroup, before the clone: the init's copy says where its cgroup mounts come
         * from, whatever its namespaces show later. */
        if (spec->cgroups_path) {
                cgroup_dirs = kiln_cgroup_dirs(spec->cgroups_path, &local);
                if (!cgroup_dirs)
                        return iso_fail(error, "%s", local->message);
        }
        if (!join_namespaces(spec, error))
                return FALSE;
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sync) < 0)
                return iso_fail_errno(error, errno, "socketpair");
        fflush(stdout);
        fflush(stderr);
        /* clone(2) as fork(2), into a new user and PID namespace at once: the PID namespace belongs to
         * the user namespace, and the init is PID 1 without a second fork. (glibc's fork() takes no
         * flags; nothing in this single-threaded program depends on the thread-id cache fork() would
         * refresh — glibc 2.34+ asks the kernel for it.) */
        pid = (pid_t)syscall(SYS_clone, (unsigned long)flags | SIGCHLD, NULL, NULL, NULL, 0UL);
        if (pid < 0) {
                int errsv = errno;
                close(sync[0]);
                close(sync[1]);
                return iso_fail_errno(error, errsv, "clone into new namespaces (0x%x)", (unsigned)flags);
        }
        if (pid == 0) {
                close(sync[0]);
                _exit(init_main(launch, cgroup_dirs, sync[1], new_ns & ~flags));
        }
        close(sync[1]);

        if (!parent_configure(pid, spec, error) || !sync_send(sync[0], MSG_GO, (int)pid, NULL) ||
            (cgroup_dirs && !parent_make_cgroup(pid, spec, cgroup_dirs, sync[0], error))) {
                if (error && !*error)
                        iso_fail_errno(error, errno, "start the init");
                kill(pid, SIGKILL);
                reap(pid, NULL);
                close(sync[0]);
                return FALSE;
        }
        r = sync_recv(sync[0], &m);
        if (r == MSG_HOOKS) {
                /* The runtime's hooks: the init waits before pivot_root. A failure ends the container. */
                if (!iso_hooks_run(spec, ISO_HOOK_PRESTART, launch->id, "creating", pid, error) ||
                    !iso_hooks_run(spec, ISO_HOOK_CREATE_RUNTIME, launch->id, "creating", pid, error)) {
                        kill(pid, SIGKILL);
                        reap(pid, NULL);
                        close(sync[0]);
                        return FALSE;
                }
                (void)sync_send(sync[0], MSG_HOOKS_DONE, 0, NULL);
                r = sync_recv(sync[0], &m);
        }
        if (r == MSG_READY && launch->mode != ISO_MODE_CREATE) {
                /* Until the exec: a failure there still comes as a message; the end of the stream is
                 * the exec. A run's exit status is the caller's to collect; a detached run fails here. */
                if (sync_recv(sync[0], &m) == MSG_ERROR) {
                        if (launch->mode == ISO_MODE_RUN_DETACHED)
                                r = MSG_ERROR;
                        else
                                iso_log_error(m.text);
                } else {
                        /* The command runs: poststart failures are only logged (runtime-spec). */
                        iso_hooks_run_logged(spec, ISO_HOOK_POSTSTART, launch->id, "running", pid);
                }
        }
        close(sync[0]);
        if (r == MSG_READY) {
                *ret_pid = pid;
                return TRUE;
        }
        if (r == MSG_ERROR) {
                g_set_error_literal(error, ISO_ERROR, m.code, m.text);
                reap(pid, NULL);
                return FALSE;
        }
        reap(pid, &status);
        if (WIFSIGNALED(status))
                return iso_fail(error, "the container's init was killed by signal %d during setup",
                                WTERMSIG(status));
        return iso_fail(error, "the container's init exited with status %d during setup",
                        WEXITSTATUS(status));
}

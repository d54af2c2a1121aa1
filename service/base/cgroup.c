/* SPDX-License-Identifier: Apache-2.0 */
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <linux/magic.h>

#include "base/cgroup.h"
#include "base/kiln-common.h"

/* The controllers kiln sets limits with; on cgroup v2 they are passed down to the run's cgroup. */
static const char *const v2_controllers[] = {"pids", "memory", "cpu", NULL};

void kiln_run_resources_clear(KilnRunResources *r)
{
        g_clear_pointer(&r->cgroups_path, g_free);
        g_clear_pointer(&r->dirs, g_array_unref);
}

gboolean kiln_cgroup_systemd_booted(void)
{
        static int booted = -1;

        /* systemd's own test (sd_booted()): the directory exists only while systemd is PID 1. */
        if (booted < 0)
                booted = access("/run/systemd/system", F_OK) == 0;
        return booted;
}

gboolean kiln_cgroup_unified(void)
{
        static int unified = -1;
        struct statfs st;

        if (unified < 0)
                unified = statfs("/sys/fs/cgroup", &st) == 0 && st.f_type == CGROUP2_SUPER_MAGIC;
        return unified;
}

void kiln_cgroup_resolve(const KilnConfig *config, gint64 pids_limit, guint64 memory, guint64 cpu_weight,
                         uid_t owner, const char *container_id, gboolean isolate, KilnRunResources *ret)
{
        const char *parent = config->cgroup_parent;

        ret->pids_limit =
                pids_limit == KILN_PIDS_LIMIT_UNSET ? (gint64)config->pids_limit : MAX(pids_limit, 0);
        /* pids.max takes no more than the kernel's PID_MAX_LIMIT: a limit above it is no limit. */
        if (ret->pids_limit > KILN_PIDS_MAX_LIMIT)
                ret->pids_limit = 0;
        ret->memory = memory == KILN_MEMORY_UNSET ? config->memory : memory;
        ret->cpu_weight = cpu_weight ? cpu_weight : config->cpu_weight;
        ret->cgroup_v2 = kiln_cgroup_unified();
        /* kiln-isolate has no systemd client: its runs stay on cgroupfs (docs/decisions.md). A slice name
         * cannot hold '/': an administrator's path parent keeps cgroupfs too. */
        ret->systemd = !isolate && kiln_cgroup_systemd_booted() && !strchr(parent, '/');
        g_free(ret->cgroups_path);
        if (ret->systemd)
                ret->cgroups_path = g_strdup_printf("%s-user-%u.slice:%s:%s", parent, (unsigned)owner,
                                                    parent, container_id);
        else
                ret->cgroups_path =
                        g_strdup_printf("%s/user-%u/run-%s", parent, (unsigned)owner, container_id);
}

gboolean kiln_cgroup_is_run(const char *leaf, const char *container_id)
{
        g_autofree char *scope = g_strdup_printf("-%s.scope", container_id);

        /* cgroupfs: "run-ID" (above); systemd: runc names the scope "PREFIX-ID.scope"; any other
         * runtime or layout: the id itself, as runc and crun name their own cgroups. */
        return g_str_equal(leaf, container_id) ||
               (g_str_has_prefix(leaf, "run-") && g_str_equal(leaf + 4, container_id)) ||
               g_str_has_suffix(leaf, scope);
}

/* ---- cgroupfs ---- */

typedef struct Hierarchy {
        char *controllers; /* "pids", "cpu,cpuacct", "name=systemd"; "" for the unified one */
        char *own;         /* this process's cgroup in it */
        char *mountpoint;
        char *mount_root;
} Hierarchy;

static void hierarchy_clear(gpointer data)
{
        Hierarchy *h = data;

        g_free(h->controllers);
        g_free(h->own);
        g_free(h->mountpoint);
        g_free(h->mount_root);
}

/* The super options of a v1 mount hold exactly its controllers (and name=...). */
static gboolean options_hold(const char *superopts, const char *controllers)
{
        g_auto(GStrv) opts = g_strsplit(superopts, ",", -1);
        g_auto(GStrv) want = g_strsplit(controllers, ",", -1);

        for (char **w = want; *w; w++)
                if (!g_strv_contains((const char *const *)opts, *w))
                        return FALSE;
        return TRUE;
}

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static char *unescape_mountinfo(const char *s)
{
        GString *out = g_string_new(NULL);

        for (; *s; s++) {
                if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
                    s[3] >= '0' && s[3] <= '7') {
                        g_string_append_c(out, (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0')));
                        s += 3;
                } else {
                        g_string_append_c(out, *s);
                }
        }
        return g_string_free(out, FALSE);
}

/* Finds where each hierarchy of /proc/self/cgroup is mounted (the first mount of it that shows its root,
 * or any). */
static gboolean find_mounts(GArray *hierarchies, GError **error)
{
        g_autofree char *text = NULL;
        g_auto(GStrv) lines = NULL;
        g_autoptr(GError) local = NULL;

        if (!g_file_get_contents("/proc/self/mountinfo", &text, NULL, &local))
                return kiln_fail(error, KILN_ERROR_CODE_FAILED, "cgroup: %s", local->message);
        lines = g_strsplit(text, "\n", -1);
        for (char **l = lines; *l; l++) {
                g_auto(GStrv) halves = g_strsplit(*l, " - ", 2);
                g_auto(GStrv) fields = NULL, tail = NULL;

                if (!halves[0] || !halves[1])
                        continue;
                fields = g_strsplit(halves[0], " ", -1);
                tail = g_strsplit(halves[1], " ", -1);
                if (g_strv_length(fields) < 5 || g_strv_length(tail) < 3)
                        continue;
                if (!g_str_equal(tail[0], "cgroup") && !g_str_equal(tail[0], "cgroup2"))
                        continue;
                for (guint i = 0; i < hierarchies->len; i++) {
                        Hierarchy *h = &g_array_index(hierarchies, Hierarchy, i);
                        gboolean unified = !*h->controllers;

                        if (h->mountpoint || unified != g_str_equal(tail[0], "cgroup2") ||
                            (!unified && !options_hold(tail[2], h->controllers)))
                                continue;
                        h->mountpoint = unescape_mountinfo(fields[4]);
                        h->mount_root = unescape_mountinfo(fields[3]);
                }
        }
        return TRUE;
}

/* Every cgroup path component: a plain name. kilnd writes these paths; kiln-isolate reads them from a
 * config.json, so it checks them again. */
static gboolean check_cgroups_path(const char *path, GError **error)
{
        g_auto(GStrv) names = g_strsplit(path[0] == '/' ? path + 1 : path, "/", -1);

        if (!*path || strchr(path, ':'))
                return kiln_invalid(error, "linux.cgroupsPath", "'%s' is not a cgroupfs path", path);
        for (char **n = names; *n; n++)
                if (!**n || g_str_equal(*n, ".") || g_str_equal(*n, "..") || strchr(*n, '\n'))
                        return kiln_invalid(error, "linux.cgroupsPath", "'%s' is not a plain cgroup path",
                                            path);
        return TRUE;
}

static void kiln_cgroup_dir_clear(gpointer data)
{
        KilnCgroupDir *d = data;

        g_free(d->path);
        g_free(d->mount_name);
        g_free(d->controllers);
}

/* kiln_cgroup_dirs(); with @hybrid_unified, on a hybrid host also the directory in the unified hierarchy,
 * where runc's v1 driver makes the container's cgroup too (under this process's own cgroup there, as in
 * the v1 hierarchies), and which kilnd removes with the others. */
static GArray *cgroup_dirs(const char *cgroups_path, gboolean hybrid_unified, GError **error)
{
        g_autoptr(GArray) hierarchies = g_array_new(FALSE, TRUE, sizeof(Hierarchy));
        g_autoptr(GArray) dirs = g_array_new(FALSE, TRUE, sizeof(KilnCgroupDir));
        g_autofree char *text = NULL;
        g_auto(GStrv) lines = NULL;
        g_autoptr(GError) local = NULL;
        gboolean hybrid = FALSE;

        g_array_set_clear_func(hierarchies, hierarchy_clear);
        g_array_set_clear_func(dirs, kiln_cgroup_dir_clear);
        if (!check_cgroups_path(cgroups_path, error))
                return NULL;
        if (!g_file_get_contents("/proc/self/cgroup", &text, NULL, &local)) {
                kiln_fail(error, KILN_ERROR_CODE_FAILED, "cgroup: %s", local->message);
                return NULL;
        }
        lines = g_strsplit(text, "\n", -1);
        for (char **l = lines; *l; l++) {
                g_auto(GStrv) f = g_strsplit(*l, ":", 3);
                Hierarchy h = {0};

                if (g_strv_length(f) != 3 || f[2][0] != '/')
                        continue;
                /* A v1 hierarchy without controllers other than a name (name=systemd) still counts:
                 * runc makes the container's cgroup there too. */
                hybrid |= *f[1] != '\0';
                h.controllers = g_strdup(f[1]);
                h.own = g_strdup(f[2]);
                g_array_append_val(hierarchies, h);
        }
        if (!find_mounts(hierarchies, error))
                return NULL;
        for (guint i = 0; i < hierarchies->len; i++) {
                Hierarchy *h = &g_array_index(hierarchies, Hierarchy, i);
                gboolean unified = !*h->controllers;
                g_autofree char *base = NULL;
                const char *own = h->own;
                KilnCgroupDir d = {0};

                if ((unified && hybrid && !hybrid_unified) || !h->mountpoint)
                        continue;
                /* A mount of a subtree (inside a cgroup namespace, or a bind) shows paths below its root. */
                if (!g_str_equal(h->mount_root, "/")) {
                        if (!g_str_has_prefix(own, h->mount_root))
                                continue;
                        own += strlen(h->mount_root);
                }
                if (cgroups_path[0] == '/')
                        base = g_strdup("");
                else if (unified && !hybrid)
                        base = g_path_get_dirname(*own ? own : "/");
                else
                        base = g_strdup(own);
                d.unified = unified;
                d.path = g_build_filename(h->mountpoint, base, cgroups_path, NULL);
                d.mount_name = g_path_get_basename(h->mountpoint);
                d.controllers = g_strdup(h->controllers);
                g_array_append_val(dirs, d);
        }
        if (dirs->len == 0) {
                kiln_fail(error, KILN_ERROR_CODE_FAILED, "cgroup: no cgroup hierarchy is mounted");
                return NULL;
        }
        return g_steal_pointer(&dirs);
}

GArray *kiln_cgroup_dirs(const char *cgroups_path, GError **error)
{
        return cgroup_dirs(cgroups_path, FALSE, error);
}

/* ---- kiln-isolate: creating and joining ---- */

static gboolean write_at(const char *dir, const char *file, const char *value, GError **error)
{
        g_autofree char *path = g_build_filename(dir, file, NULL);
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        gsize len = strlen(value);

        if (fd < 0 || write(fd, value, len) != (ssize_t)len)
                return kiln_fail(error, KILN_ERROR_CODE_FAILED, "cgroup: write '%s' to %s: %s", value, path,
                                 g_strerror(errno));
        return TRUE;
}

/* cgroup v2: a controller reaches a cgroup only when every ancestor passes it on. Each level from @top
 * (where the run's cgroupsPath starts) down to the run's parent passes on what it is offered of "pids",
 * "memory" and "cpu"; what it is not offered fails later, at the limit's file. */
static void pass_controllers_down(const char *top, const char *cgroups_path)
{
        g_auto(GStrv) names = g_strsplit(cgroups_path[0] == '/' ? cgroups_path + 1 : cgroups_path, "/", -1);
        g_autofree char *level = g_strdup(top);

        for (char **n = names; *n && n[1]; n++) {
                g_autofree char *offered_path = g_build_filename(level, "cgroup.controllers", NULL);
                g_autofree char *offered = NULL;
                g_auto(GStrv) have = NULL;
                char *next;

                if (g_file_get_contents(offered_path, &offered, NULL, NULL)) {
                        have = g_strsplit_set(g_strstrip(offered), " ", -1);
                        for (const char *const *c = v2_controllers; *c; c++) {
                                g_autofree char *plus = g_strconcat("+", *c, NULL);
                                if (g_strv_contains((const char *const *)have, *c))
                                        (void)write_at(level, "cgroup.subtree_control", plus, NULL);
                        }
                }
                next = g_build_filename(level, *n, NULL);
                g_free(level);
                level = next;
        }
}

/* Sets @dir's cgroup.clone_children (cgroup v1) unless it is set. */
static gboolean clone_children(const char *dir, GError **error)
{
        g_autofree char *path = g_build_filename(dir, "cgroup.clone_children", NULL);
        g_autofree char *value = NULL;

        if (g_file_get_contents(path, &value, NULL, NULL) && g_str_equal(g_strstrip(value), "1"))
                return TRUE;
        return write_at(dir, "cgroup.clone_children", "1", error);
}

/* cgroup v1's cpuset: a new cgroup starts with no CPUs and no memory nodes, and refuses processes until
 * it has some; each level made gets its parent's (as runc does). Writing them makes the kernel rebuild its
 * scheduling domains (~0.5 ms here), so each level above the run's own also gets cgroup.clone_children:
 * the run's cgroup is then born with its parent's CPUs and nodes, and the check below finds them set. */
static gboolean fill_cpuset(const char *top, const char *cgroups_path, GError **error)
{
        g_auto(GStrv) names = g_strsplit(cgroups_path[0] == '/' ? cgroups_path + 1 : cgroups_path, "/", -1);
        g_autofree char *level = g_strdup(top);

        for (char **n = names; *n; n++) {
                char *next = g_build_filename(level, *n, NULL);

                if (n != names && !clone_children(level, error)) {
                        g_free(next);
                        return FALSE;
                }
                for (const char *const *f = (const char *const[]){"cpuset.cpus", "cpuset.mems", NULL}; *f;
                     f++) {
                        g_autofree char *parent_file = g_build_filename(level, *f, NULL);
                        g_autofree char *child_file = g_build_filename(next, *f, NULL);
                        g_autofree char *parent_value = NULL, *child_value = NULL;

                        if (!g_file_get_contents(child_file, &child_value, NULL, NULL) ||
                            *g_strstrip(child_value))
                                continue;
                        if (!g_file_get_contents(parent_file, &parent_value, NULL, NULL) ||
                            !write_at(next, *f, g_strstrip(parent_value), error)) {
                                g_free(next);
                                return error && *error ? FALSE
                                                       : kiln_fail(error, KILN_ERROR_CODE_FAILED,
                                                                   "cgroup: cannot read %s", parent_file);
                        }
                }
                g_free(level);
                level = next;
        }
        return TRUE;
}

/* Makes each level of @cgroups_path under @top, each 0755 whoever made it (runc, under kilnd's umask, or
 * us): the init of a chroot run in a user namespace binds its cgroup from the host's tree, so it must be
 * able to walk there, as anyone may walk the host's own /sys/fs/cgroup. A level that is there already
 * is only looked at (a run's parents are, but for the first run). */
static gboolean make_levels(const char *top, const char *cgroups_path, GError **error)
{
        g_auto(GStrv) names = g_strsplit(cgroups_path[0] == '/' ? cgroups_path + 1 : cgroups_path, "/", -1);
        g_autofree char *level = g_strdup(top);

        for (char **n = names; *n; n++) {
                char *next = g_build_filename(level, *n, NULL);
                struct stat st;

                g_free(level);
                level = next;
                /* Safe: under a cgroup file system, names from kiln.conf and kilnd's ids; a cgroup file
                 * system holds no links to follow. */
                if (stat(level, &st) < 0 &&
                    (errno != ENOENT || (mkdir(level, 0755) < 0 && errno != EEXIST) || stat(level, &st) < 0))
                        return kiln_fail(error, KILN_ERROR_CODE_FAILED, "cgroup: mkdir %s: %s", level,
                                         g_strerror(errno));
                if ((st.st_mode & 07777) != 0755 && chmod(level, 0755) < 0)
                        return kiln_fail(error, KILN_ERROR_CODE_FAILED, "cgroup: chmod %s: %s", level,
                                         g_strerror(errno));
        }
        return TRUE;
}

/* A v1 hierarchy's files are its controllers': a look at its name, not a lookup in the file system. */
static gboolean has_controller(const KilnCgroupDir *d, const char *controller)
{
        g_auto(GStrv) names = g_strsplit(d->controllers, ",", -1);
        return g_strv_contains((const char *const *)names, controller);
}

static gboolean has_file(const char *dir, const char *file)
{
        g_autofree char *path = g_build_filename(dir, file, NULL);
        return access(path, F_OK) == 0;
}

/* The limits that belong to the hierarchy at @d: a v1 hierarchy has only its controllers' files; on v2
 * a file missing for a limit asked for means the controller did not reach the cgroup, and fails. */
static gboolean write_limits(const KilnCgroupDir *d, const KilnCgroupLimits *l, GError **error)
{
        const char *memory_file = d->unified ? "memory.max" : "memory.limit_in_bytes";

        if (d->unified ? has_file(d->path, "pids.max") || l->pids_limit > 0 : has_controller(d, "pids")) {
                g_autofree char *pids = l->pids_limit > 0
                                                ? g_strdup_printf("%" G_GINT64_FORMAT, l->pids_limit)
                                                : g_strdup("max");
                if (!write_at(d->path, "pids.max", pids, error))
                        return FALSE;
        }
        if (l->memory && (d->unified || has_controller(d, "memory"))) {
                g_autofree char *memory = g_strdup_printf("%" G_GUINT64_FORMAT, l->memory);
                if (!write_at(d->path, memory_file, memory, error))
                        return FALSE;
        }
        if (d->unified && (l->cpu_weight || l->cpu_shares)) {
                /* runc's conversion of shares [2, 262144] to a weight [1, 10000]. */
                guint64 w = l->cpu_weight ? l->cpu_weight
                                          : 1 + ((CLAMP(l->cpu_shares, 2, 262144) - 2) * 9999) / 262142;
                g_autofree char *weight = g_strdup_printf("%" G_GUINT64_FORMAT, w);
                if (!write_at(d->path, "cpu.weight", weight, error))
                        return FALSE;
        } else if (!d->unified && l->cpu_shares && has_controller(d, "cpu")) {
                g_autofree char *shares = g_strdup_printf("%" G_GUINT64_FORMAT, l->cpu_shares);
                if (!write_at(d->path, "cpu.shares", shares, error))
                        return FALSE;
        }
        return TRUE;
}

/* The directories of one hierarchy, made where missing, and what a new cgroup needs before a process can
 * join it. */
static gboolean make_dir(const KilnCgroupDir *d, const char *cgroups_path, GError **error)
{
        /* Above where the run's path starts is not ours to change. */
        g_autofree char *top = g_strndup(d->path, strlen(d->path) - strlen(cgroups_path));

        if (!make_levels(top, cgroups_path, error))
                return FALSE;
        if (d->unified)
                pass_controllers_down(top, cgroups_path);
        else if (has_controller(d, "cpuset") && !fill_cpuset(top, cgroups_path, error))
                return FALSE;
        return TRUE;
}

void kiln_cgroup_make_early(KilnRunResources *resources)
{
        gboolean hybrid = FALSE;

        if (!resources->cgroups_path || resources->systemd || resources->dirs)
                return;
        /* Safe: the run's own cgroup, named by kilnd (kiln_cgroup_resolve(); cgroup_dirs() checks the
         * path again), under kilnd's own cgroup; what kiln-isolate would make a moment later. */
        resources->dirs = cgroup_dirs(resources->cgroups_path, TRUE, NULL);
        if (!resources->dirs)
                return;
        for (guint i = 0; i < resources->dirs->len; i++)
                hybrid |= !g_array_index(resources->dirs, KilnCgroupDir, i).unified;
        for (guint i = 0; i < resources->dirs->len; i++) {
                const KilnCgroupDir *d = &g_array_index(resources->dirs, KilnCgroupDir, i);

                /* On a hybrid host kiln-isolate uses the v1 hierarchies only (kiln_cgroup_dirs()). */
                if (!(d->unified && hybrid))
                        (void)make_dir(d, resources->cgroups_path, NULL);
        }
}

gboolean kiln_cgroup_create(GArray *dirs, const char *cgroups_path, const KilnCgroupLimits *limits,
                            GError **error)
{
        gboolean saw_pids = FALSE, saw_memory = FALSE;

        for (guint i = 0; i < dirs->len; i++) {
                const KilnCgroupDir *d = &g_array_index(dirs, KilnCgroupDir, i);

                if (!make_dir(d, cgroups_path, error) || !write_limits(d, limits, error))
                        return FALSE;
                saw_pids |= d->unified || has_controller(d, "pids");
                saw_memory |= d->unified || has_controller(d, "memory");
        }
        if ((limits->pids_limit > 0 && !saw_pids) || (limits->memory && !saw_memory))
                return kiln_fail(error, KILN_ERROR_CODE_FAILED,
                                 "cgroup: no %s controller on this host for the run's limit",
                                 limits->pids_limit > 0 && !saw_pids ? "pids" : "memory");
        return TRUE;
}

gboolean kiln_cgroup_join(GArray *dirs, pid_t pid, GError **error)
{
        g_autofree char *pid_text = g_strdup_printf("%d", (int)pid);

        for (guint i = 0; i < dirs->len; i++)
                if (!write_at(g_array_index(dirs, KilnCgroupDir, i).path, "cgroup.procs", pid_text, error))
                        return FALSE;
        return TRUE;
}

GArray *kiln_cgroup_open_tasks(GArray *dirs, GError **error)
{
        g_autoptr(GArray) fds = kiln_fd_array_new();

        for (guint i = 0; i < dirs->len; i++) {
                const KilnCgroupDir *d = &g_array_index(dirs, KilnCgroupDir, i);
                g_autofree char *path = g_build_filename(d->path, "tasks", NULL);
                int fd;

                if (d->unified) {
                        kiln_fail(error, KILN_ERROR_CODE_FAILED, "cgroup: %s is cgroup v2: no tasks file",
                                  d->path);
                        return NULL;
                }
                fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
                if (fd < 0) {
                        kiln_fail(error, KILN_ERROR_CODE_FAILED, "cgroup: open %s: %s", path,
                                  g_strerror(errno));
                        return NULL;
                }
                g_array_append_val(fds, fd);
        }
        return g_steal_pointer(&fds);
}

gboolean kiln_cgroup_join_self(GArray *dirs, GArray *tasks_fds, GError **error)
{
        for (guint i = 0; i < tasks_fds->len; i++)
                if (write(g_array_index(tasks_fds, int, i), "0", 1) != 1)
                        return kiln_fail(error, KILN_ERROR_CODE_FAILED, "cgroup: move into %s: %s",
                                         g_array_index(dirs, KilnCgroupDir, i).path, g_strerror(errno));
        return TRUE;
}

/* ---- kilnd: removing ---- */

/* Kills what is still in the cgroup at @dir. cgroup.kill where the kernel has it (5.14, v2); otherwise
 * each pid listed: a listed pid is in the run's cgroup at the moment it is read, and the run's own
 * processes are all that can be there. */
static void kill_members(const char *dir)
{
        g_autofree char *procs_path = g_build_filename(dir, "cgroup.procs", NULL);
        g_autofree char *procs = NULL;
        g_auto(GStrv) pids = NULL;

        if (has_file(dir, "cgroup.kill") && write_at(dir, "cgroup.kill", "1", NULL))
                return;
        if (!g_file_get_contents(procs_path, &procs, NULL, NULL))
                return;
        pids = g_strsplit(procs, "\n", -1);
        for (char **p = pids; *p; p++) {
                gint64 pid = g_ascii_strtoll(*p, NULL, 10);
                if (pid > 1)
                        (void)kill((pid_t)pid, SIGKILL);
        }
}

void kiln_cgroup_remove(const KilnRunResources *resources)
{
        g_autoptr(GArray) dirs = NULL;
        g_autoptr(GError) error = NULL;

        if (!resources->cgroups_path || resources->systemd)
                return;
        dirs = resources->dirs ? g_array_ref(resources->dirs)
                               : cgroup_dirs(resources->cgroups_path, TRUE, &error);
        if (!dirs) {
                g_warning("Cannot find the cgroup %s: %s", resources->cgroups_path, error->message);
                return;
        }
        for (guint i = 0; i < dirs->len; i++) {
                const char *path = g_array_index(dirs, KilnCgroupDir, i).path;

                /* A few rounds: killed processes leave the cgroup once the kernel has torn them down. */
                for (int round = 0; rmdir(path) < 0; round++) {
                        if (errno == ENOENT)
                                break;
                        if (errno != EBUSY || round == 50) {
                                g_warning("Cannot remove cgroup %s: %s", path, g_strerror(errno));
                                break;
                        }
                        kill_members(path);
                        g_usleep(2000);
                }
        }
}

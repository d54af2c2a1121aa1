/* SPDX-License-Identifier: Apache-2.0 */
#include <fcntl.h>
#include <arpa/inet.h>
#include <fts.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kiln-build-config.h"

#include "base/passwd.h"
#include "base/fs-util.h"
#include "base/rootfs.h"
#include "base/size.h"
#include "run/run.h"
#include "run/run-caches.h"
#include "run/run-hooks.h"
#include "run/run-volumes.h"
#include "runtime/runtime.h"
#include "spec/seccomp-profile.h"
#include "spec/spec.h"
#include "storage/userns.h"

/* /etc/passwd and /etc/group of an image are read up to this size; larger ones are refused. */
#define ACCOUNT_FILE_MAX (4 * 1024 * 1024)
#define HOST_FILE_MAX (256 * 1024)

static const char *first_set(const char *a, const char *b)
{
        return a && *a ? a : b && *b ? b : NULL;
}

gboolean kiln_run_wants_userns(const KilnBuilderConfig *c, const KilnRunOptions *o)
{
        return g_strcmp0(first_set(o->userns, c->userns), "auto") == 0;
}

static char **concat_lists(char **a, char **b)
{
        g_autoptr(GStrvBuilder) all = g_strv_builder_new();

        if (a)
                g_strv_builder_addv(all, (const char **)a);
        if (b)
                g_strv_builder_addv(all, (const char **)b);
        return g_strv_builder_end(all);
}

void kiln_run_plan_free(KilnRunPlan *plan)
{
        if (!plan)
                return;
        /* The network's helper and namespaces before the bundle that holds their files goes. */
        g_clear_pointer(&plan->network, kiln_network_free);
        /* Staged volumes first: the bundle is removed without crossing into other file systems. */
        /* Last first: an overlay before the staged bind it has as its lower dir. */
        for (guint i = plan->staged ? plan->staged->len : 0; i-- > 0;)
                if (umount2(plan->staged->pdata[i], MNT_DETACH | UMOUNT_NOFOLLOW) < 0)
                        g_warning("Cannot unmount %s: %s", (char *)plan->staged->pdata[i],
                                  g_strerror(errno));
        g_clear_pointer(&plan->staged, g_ptr_array_unref);
        g_clear_pointer(&plan->cache_leases, g_ptr_array_unref); /* run parity: the caches are free again */
        if (plan->bundle_dir) {
                g_autoptr(GError) error = NULL;
                if (!kiln_storage_remove_bundle(plan->storage, plan->container_id, &error))
                        g_warning("Cannot remove bundle %s: %s", plan->bundle_dir, error->message);
        }
        if (plan->rootfs)
                plan->lease.release(plan->lease.keeper, plan->builder_id);
        g_free(plan->builder_id);
        g_free(plan->container_id);
        g_free(plan->bundle_dir);
        g_free(plan->rootfs);
        g_free(plan->runtime);
        g_strfreev(plan->runtime_args);
        g_free(plan->state_root);
        g_strfreev(plan->argv);
        g_free(plan->early_message);
        kiln_cgroup_remove(&plan->resources); /* the container is gone: its cgroup goes too */
        kiln_run_resources_clear(&plan->resources);
        g_free(plan);
}

/* Everything the spec input points to, kept alive until the spec is generated. */
typedef struct {
        KilnSpecInput in;
        GPtrArray *strings;      /* owned strings the input points into */
        GPtrArray *string_lists; /* owned NULL-terminated lists */
        GArray *mounts;          /* KilnMount */
        GArray *devices;         /* KilnDevice */
        GArray *gids;            /* guint32 */
        JsonNode *seccomp;
        KilnCacheRegistry *caches; /* run parity: borrowed from the input */
        GPtrArray *hook_files;     /* KilnHookFile: what s.in.hooks points into */
        GArray *hooks;             /* KilnHook */
} SpecScratch;

static void spec_scratch_clear(SpecScratch *s)
{
        g_clear_pointer(&s->strings, g_ptr_array_unref);
        g_clear_pointer(&s->string_lists, g_ptr_array_unref);
        g_clear_pointer(&s->mounts, g_array_unref);
        g_clear_pointer(&s->devices, g_array_unref);
        g_clear_pointer(&s->gids, g_array_unref);
        g_clear_pointer(&s->seccomp, json_node_unref);
        g_clear_pointer(&s->hooks, g_array_unref);
        g_clear_pointer(&s->hook_files, g_ptr_array_unref);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(SpecScratch, spec_scratch_clear)

/* OCI hooks: the administrator's hooks.d files whose conditions the run meets (run-hooks.h). The
 * conditions look at what the caller chose — the builder's annotations (buildah run passes its
 * annotations), the command, its bind mounts — so a caller picks which of the administrator's hooks
 * run, as under podman; what runs, and its arguments, come only from those files. Then the hooks of
 * the CDI devices the run names (run-devices.h), which run-privileged granted with the devices. */
static void fill_hooks(KilnRunPlan *plan, SpecScratch *s, const KilnConfig *config,
                       const KilnRunDevices *devices)
{
        KilnHookTarget target = {.annotations = s->in.annotations, .command = s->in.argv[0]};

        for (gsize i = 0; i < s->in.n_mounts; i++)
                if (s->in.mounts[i].type == KILN_MOUNT_BIND)
                        target.has_bind_mounts = TRUE;
        s->hook_files = kiln_hooks_load((const char *const *)config->hooks_directories);
        s->hooks = g_array_new(FALSE, TRUE, sizeof(KilnHook));
        /* pasta or slirp4netns: kiln's own gate first, so that the administrator's createRuntime hooks
         * (and the command) find the network ready (network.h). */
        if (plan->network) {
                KilnHook gate;
                kiln_network_gate_hook(plan->network, &gate);
                g_array_append_val(s->hooks, gate);
        }
        kiln_hooks_select(s->hook_files, &target, s->hooks);
        if (devices) {
                g_autoptr(GArray) cdi = kiln_run_devices_hooks(devices);
                g_array_append_vals(s->hooks, cdi->data, cdi->len);
        }
        s->in.hooks = (const KilnHook *)s->hooks->data;
        s->in.n_hooks = s->hooks->len;
        for (guint i = 0; i < s->hooks->len; i++)
                if (g_str_equal(g_array_index(s->hooks, KilnHook, i).stage, "poststop"))
                        plan->isolate_poststop = plan->isolate;
}

static const char *keep(SpecScratch *s, char *owned)
{
        g_ptr_array_add(s->strings, owned);
        return owned;
}

static const char *const *keep_list(SpecScratch *s, char **owned)
{
        g_ptr_array_add(s->string_lists, owned);
        return (const char *const *)owned;
}

/* The run's volumes and mounts come from its one resolved list (run-volumes.h), the list its
 * authorization judged. `O` makes an overlay whose throw-away upper and work dirs live in the bundle;
 * `U` gives the source to the run's user; z and Z are no-ops without SELinux. */
/* `U`: the source belongs to the run's user afterwards, as podman's :U does. FTS_PHYSICAL never
 * follows a symlink in the tree and FTS_XDEV never leaves its file system. For a caller other than
 * uid 0, `U` needs run-privileged (run-privileges.c), and @source is the staged bind of what the
 * caller opened, not a path it named. fts rather than nftw: the ids stay in this call, not in
 * globals for a callback. */
static gboolean chown_tree(const char *arg, const char *source, uid_t uid, gid_t gid, GError **error)
{
        char *const roots[] = {(char *)source, NULL};
        FTS *fts = fts_open(roots, FTS_PHYSICAL | FTS_XDEV | FTS_NOCHDIR, NULL);
        dev_t dev = 0;
        int saved = 0;

        if (!fts)
                return kiln_invalid(error, arg, "cannot change the owner of '%s': %s", source,
                                    g_strerror(errno));
        while (!saved) {
                FTSENT *e;

                errno = 0;
                e = fts_read(fts);
                if (!e) {
                        saved = errno; /* 0 at the end */
                        break;
                }
                if (e->fts_info == FTS_DP)
                        continue; /* a directory is changed once, on the way in */
                if (e->fts_info == FTS_ERR) {
                        saved = e->fts_errno;
                        break;
                }
                if (e->fts_level == FTS_ROOTLEVEL && e->fts_statp)
                        dev = e->fts_statp->st_dev;
                /* Nothing of another file system mounted inside, not even its mount point. */
                if (e->fts_info != FTS_NS && e->fts_statp->st_dev != dev) {
                        fts_set(fts, e, FTS_SKIP);
                        continue;
                }
                if (lchown(e->fts_accpath, uid, gid) < 0)
                        saved = errno;
        }
        fts_close(fts);
        if (saved)
                return kiln_invalid(error, arg, "cannot change the owner of '%s': %s", source,
                                    g_strerror(saved));
        return TRUE;
}

/* A source held as a descriptor is bind-mounted into the bundle first, by kilnd, in the host's mount
 * namespace where the descriptor's mount lives (the runtime binds in the container's new namespace,
 * where a mount of another namespace cannot be the source), and the runtime then binds that staged
 * path: it never resolves a path a caller named. This is safe: the descriptor is never a symlink
 * (for a caller other than uid 0, a directory or a regular file: run-volumes.c checked), opened by or
 * as the caller (or, for a source the caller cannot read, by kilnd once run-privileged was granted),
 * so the bind shows only what was authorized; the bundle sits in RUNTIME/bundles, which only root
 * may enter (a bundle of a run in a user namespace is 0711 itself, for the mapped root inside
 * kiln-runtime-ns's namespace). */
static gboolean stage_fd(KilnRunPlan *plan, int fd, const char *arg, char **ret_path, GError **error)
{
        g_autofree char *target =
                g_strdup_printf("%s/volume-%u", plan->bundle_dir, plan->staged ? plan->staged->len : 0);
        g_autofree char *source = g_strdup_printf("/proc/self/fd/%d", fd);
        struct stat st;

        if (fstat(fd, &st) < 0)
                return kiln_invalid(error, arg, "fstat: %s", g_strerror(errno));
        /* A symlink would be bound as the link, and its unmount would follow it. */
        if (S_ISLNK(st.st_mode))
                return kiln_invalid(error, arg, "the source is not a directory or a regular file");
        if (S_ISDIR(st.st_mode) ? mkdir(target, 0700) < 0 : mknod(target, S_IFREG | 0600, 0) < 0)
                return kiln_fail(error, KILN_ERROR_CODE_FAILED, "Cannot stage %s: %s", arg,
                                 g_strerror(errno));
        if (mount(source, target, NULL, MS_BIND | MS_REC, NULL) < 0)
                return kiln_invalid(error, arg, "cannot bind it: %s", g_strerror(errno));
        if (!plan->staged)
                plan->staged = g_ptr_array_new_with_free_func(g_free);
        g_ptr_array_add(plan->staged, g_strdup(target));
        *ret_path = g_steal_pointer(&target);
        return TRUE;
}

/* A source the caller cannot read, bound now that run-privileged was granted: opened by kilnd (as
 * root, which is what the grant allows) and staged like any other, so the runtime still binds no
 * path of the caller's. Magic links stay refused. */
static int open_privileged_source(const KilnRunVolume *v, GError **error)
{
        int fd = kiln_openat2(AT_FDCWD, v->source, O_PATH, 0, RESOLVE_NO_MAGICLINKS);
        struct stat st;

        if (fd < 0)
                errno = -fd;
        if (fd < 0 || fstat(fd, &st) < 0) {
                kiln_invalid(error, v->arg, "source '%s': %s", v->source, g_strerror(errno));
                kiln_close_fdp(&fd);
                return -1;
        }
        if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
                kiln_invalid(error, v->arg, "the source is not a directory or a regular file");
                kiln_close_fdp(&fd);
                return -1;
        }
        return fd;
}

/* The host ids of the run's user: what files kilnd makes for it inside the root file system or a volume
 * must be owned by on disk. */
static gboolean run_user_host_ids(const SpecScratch *s, uid_t *uid, gid_t *gid, GError **error)
{
        guint32 u = s->in.uid, g = s->in.gid;

        if (s->in.n_uid_mappings > 0 &&
            (!kiln_idmap_to_host(s->in.uid_mappings, s->in.n_uid_mappings, s->in.uid, &u) ||
             !kiln_idmap_to_host(s->in.gid_mappings, s->in.n_gid_mappings, s->in.gid, &g)))
                return kiln_invalid(error, "user", "%u:%u is not mapped in the builder's user namespace",
                                    (unsigned)s->in.uid, (unsigned)s->in.gid);
        *uid = u;
        *gid = g;
        return TRUE;
}

/* ---- run parity: `O` overlays, mounted by kilnd ---- */
/* An `O` volume (and a bind --mount with rw) is an overlay kilnd mounts itself, in the host's mount
 * namespace, at BUNDLE/overlay-N, which the runtime then binds like any staged volume: the same for
 * both executors, with or without a user namespace (where neither runc nor kiln-isolate, as the mapped
 * root, may mount an overlay of these directories). This is safe: the lower dir is @lower, the staged
 * bind of what the caller opened (or uid 0's own path); the upper and work dirs are kilnd's own in the
 * bundle, or the caller's persistent ones, opened as the caller and owned by it (run-volumes.c), named
 * to overlayfs only as /proc/self/fd/N, never as a path the caller could swap. In a user namespace
 * the overlay is nosuid,nodev. A throw-away upper dir takes the owner and mode of the lower's root, so
 * that the merged root is what the caller sees in the source (podman and buildah do the same). */
static gboolean mount_overlay(SpecScratch *s, KilnRunPlan *plan, const KilnRunVolume *v, const char *lower,
                              const struct stat *lower_st, char **ret_path, GError **error)
{
        guint n = plan->staged ? plan->staged->len : 0;
        g_autofree char *target = g_strdup_printf("%s/overlay-%u", plan->bundle_dir, n);
        g_autofree char *dir = g_strdup_printf("%s/overlay-%u.d", plan->bundle_dir, n);
        g_autofree char *upper = g_build_filename(dir, "upper", NULL);
        g_autofree char *work = g_build_filename(dir, "work", NULL);
        g_autofree char *data = NULL;
        unsigned long flags = s->in.n_uid_mappings > 0 ? MS_NOSUID | MS_NODEV : 0;

        if (!S_ISDIR(lower_st->st_mode))
                return kiln_invalid(error, v->arg, "an overlay's source must be a directory");
        if (mkdir(target, 0700) < 0)
                return kiln_fail(error, KILN_ERROR_CODE_FAILED, "Cannot create an overlay for %s: %s",
                                 v->arg, g_strerror(errno));
        if (v->upper_fd >= 0) {
                g_free(upper);
                g_free(work);
                upper = g_strdup_printf("/proc/self/fd/%d", v->upper_fd);
                work = g_strdup_printf("/proc/self/fd/%d", v->work_fd);
        } else if (mkdir(dir, 0700) < 0 || mkdir(upper, 0700) < 0 || mkdir(work, 0700) < 0 ||
                   chown(upper, lower_st->st_uid, lower_st->st_gid) < 0 ||
                   chmod(upper, lower_st->st_mode & 07777) < 0) {
                return kiln_fail(error, KILN_ERROR_CODE_FAILED, "Cannot create an overlay for %s: %s",
                                 v->arg, g_strerror(errno));
        }
        data = g_strdup_printf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work);
        if (mount("overlay", target, "overlay", flags, data) < 0)
                return kiln_invalid(error, v->arg, "cannot mount the overlay: %s", g_strerror(errno));
        if (!plan->staged)
                plan->staged = g_ptr_array_new_with_free_func(g_free);
        g_ptr_array_add(plan->staged, g_strdup(target));
        *ret_path = g_steal_pointer(&target);
        return TRUE;
}

/* ---- run parity: type=cache ---- */
/* The caller's cache (run-caches.h), staged into the bundle like any source held as a descriptor, so
 * that the runtime, in a user namespace too, binds no path of kilnd's state. A new cache belongs to
 * the host ids of its uid= and gid= in the run's user namespace: its owner inside is what was asked. */
static gboolean open_cache(SpecScratch *s, KilnRunPlan *plan, const KilnRunVolume *v, char **ret_path,
                           GError **error)
{
        guint32 uid = v->cache_uid, gid = v->cache_gid;
        KilnCacheLease *lease = NULL;
        gboolean private_copy = FALSE;
        _cleanup_close_ int fd = -1;

        if (s->in.n_uid_mappings > 0 &&
            (!kiln_idmap_to_host(s->in.uid_mappings, s->in.n_uid_mappings, v->cache_uid, &uid) ||
             !kiln_idmap_to_host(s->in.gid_mappings, s->in.n_gid_mappings, v->cache_gid, &gid)))
                return kiln_invalid(error, v->arg,
                                    "uid %u or gid %u is not mapped in the builder's user namespace",
                                    v->cache_uid, v->cache_gid);
        fd = kiln_run_cache_open(s->caches, v, uid, gid, &private_copy, &lease, error);
        if (fd < 0 && !private_copy)
                return FALSE;
        if (private_copy) {
                /* sharing=private while another run uses the cache: an empty one of its own, in the
                 * bundle, gone with it. */
                g_autofree char *dir = g_strdup_printf("%s/cache-%u", plan->bundle_dir, s->mounts->len);
                if (mkdir(dir, 0700) < 0 || chown(dir, uid, gid) < 0 || chmod(dir, v->cache_mode) < 0)
                        return kiln_fail(error, KILN_ERROR_CODE_FAILED,
                                         "Cannot make a private cache for %s: %s", v->arg,
                                         g_strerror(errno));
                *ret_path = g_steal_pointer(&dir);
                return TRUE;
        }
        if (!plan->cache_leases)
                plan->cache_leases = g_ptr_array_new_with_free_func((GDestroyNotify)kiln_cache_lease_free);
        g_ptr_array_add(plan->cache_leases, lease);
        return stage_fd(plan, fd, v->arg, ret_path, error);
}

/* ---- run parity: type=secret ---- */
/* The secret's bytes go from the caller's sealed memfd straight into a file on a tmpfs of its own,
 * mounted by kilnd at BUNDLE/secret-N (nosuid, nodev, noexec, not swapped where the kernel can say so,
 * sized for the one file), which the runtime binds read-only at the target: never a file on disk, in
 * the bundle's own files or config.json (which holds only the path), nor in the builder's upper dir;
 * the tmpfs is unmounted with the other staged mounts when the run ends. The file belongs to the host
 * ids of its uid= and gid= in the run's user namespace. */
static gboolean mount_secret(SpecScratch *s, KilnRunPlan *plan, const KilnRunVolume *v, char **ret_path,
                             GError **error)
{
        guint32 uid = v->cache_uid, gid = v->cache_gid;
        guint n = plan->staged ? plan->staged->len : 0;
        g_autofree char *dir = g_strdup_printf("%s/secret-%u", plan->bundle_dir, n);
        g_autofree char *options = NULL, *buf = NULL;
        _cleanup_close_ int dirfd = -1, fd = -1;
        const unsigned long flags = MS_NOSUID | MS_NODEV | MS_NOEXEC;
        struct stat st;
        off_t offset = 0;

        if (s->in.n_uid_mappings > 0 &&
            (!kiln_idmap_to_host(s->in.uid_mappings, s->in.n_uid_mappings, v->cache_uid, &uid) ||
             !kiln_idmap_to_host(s->in.gid_mappings, s->in.n_gid_mappings, v->cache_gid, &gid)))
                return kiln_invalid(error, v->arg,
                                    "uid %u or gid %u is not mapped in the builder's user namespace",
                                    v->cache_uid, v->cache_gid);
        if (fstat(v->fd, &st) < 0 || st.st_size > KILN_SECRET_MAX)
                return kiln_invalid(error, v->arg, "the secret cannot be read");
        if (mkdir(dir, 0700) < 0)
                return kiln_fail(error, KILN_ERROR_CODE_FAILED, "Cannot make a mount point for %s: %s",
                                 v->arg, g_strerror(errno));
        options = g_strdup_printf("size=%" G_GUINT64_FORMAT ",nr_inodes=8,mode=0711,noswap",
                                  (guint64)st.st_size + 65536);
        if (mount("tmpfs", dir, "tmpfs", flags, options) < 0) {
                /* noswap is Linux 6.4's: without it the pages may be swapped, like any process's memory. */
                options[strlen(options) - strlen(",noswap")] = '\0';
                if (mount("tmpfs", dir, "tmpfs", flags, options) < 0)
                        return kiln_fail(error, KILN_ERROR_CODE_FAILED, "Cannot mount a tmpfs for %s: %s",
                                         v->arg, g_strerror(errno));
        }
        if (!plan->staged)
                plan->staged = g_ptr_array_new_with_free_func(g_free);
        g_ptr_array_add(plan->staged, g_strdup(dir));
        dirfd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        fd = dirfd < 0 ? -1
                       : openat(dirfd, "secret", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return kiln_fail(error, KILN_ERROR_CODE_FAILED, "Cannot write the secret of %s: %s", v->arg,
                                 g_strerror(errno));
        buf = g_malloc(64 * 1024);
        while (offset < st.st_size) {
                ssize_t got = pread(v->fd, buf, 64 * 1024, offset), put = 0;
                if (got < 0 && errno == EINTR)
                        continue;
                if (got <= 0)
                        return kiln_invalid(error, v->arg, "the secret cannot be read: %s",
                                            got < 0 ? g_strerror(errno) : "it is shorter than it was");
                while (put < got) {
                        ssize_t w = write(fd, buf + put, (size_t)(got - put));
                        if (w < 0 && errno == EINTR)
                                continue;
                        if (w <= 0)
                                return kiln_fail(error, KILN_ERROR_CODE_FAILED,
                                                 "Cannot write the secret of %s: %s", v->arg,
                                                 g_strerror(errno));
                        put += w;
                }
                offset += got;
        }
        explicit_bzero(buf, 64 * 1024);
        if (fchown(fd, uid, gid) < 0 || fchmod(fd, v->cache_mode) < 0)
                return kiln_fail(error, KILN_ERROR_CODE_FAILED,
                                 "Cannot give the secret of %s to its owner: %s", v->arg, g_strerror(errno));
        *ret_path = g_build_filename(dir, "secret", NULL);
        return TRUE;
}

static gboolean add_volume(SpecScratch *s, KilnRunPlan *plan, const KilnRunVolume *v, GError **error)
{
        KilnMount mount = {.type = KILN_MOUNT_BIND, .arg = keep(s, g_strdup(v->arg))};
        const char *source = v->source;
        g_autofree char *staged = NULL;
        g_autofree char *merged = NULL; /* run parity: an overlay kilnd mounted */
        struct stat st;
        uid_t uid = (uid_t)-1; /* -1: set below; to chown, "leave as is" */
        gid_t gid = (gid_t)-1;

        if (v->kind == KILN_RUN_VOLUME_TMPFS) {
                mount.type = KILN_MOUNT_TMPFS;
                mount.destination = keep(s, g_strdup(v->destination));
                mount.options = keep_list(s, g_strdupv(v->options));
                g_array_append_val(s->mounts, mount);
                return TRUE;
        }
        if (v->kind == KILN_RUN_VOLUME_CACHE || v->kind == KILN_RUN_VOLUME_SECRET) { /* run parity */
                if (v->kind == KILN_RUN_VOLUME_CACHE ? !open_cache(s, plan, v, &staged, error)
                                                     : !mount_secret(s, plan, v, &staged, error))
                        return FALSE;
                mount.destination = keep(s, g_strdup(v->destination));
                mount.options = keep_list(s, g_strdupv(v->options));
                mount.source = keep(s, g_steal_pointer(&staged));
                g_array_append_val(s->mounts, mount);
                return TRUE;
        }
        /* A source held open (volume_fds, or a path a caller other than uid 0 named, opened as the
         * caller) is bound from that descriptor; so is one the caller cannot read, opened now. Only
         * uid 0's paths reach the runtime as paths. */
        if (v->fd >= 0) {
                if (!stage_fd(plan, v->fd, v->arg, &staged, error))
                        return FALSE;
                source = staged;
        } else if (v->unreadable) {
                _cleanup_close_ int fd = open_privileged_source(v, error);
                if (fd < 0 || !stage_fd(plan, fd, v->arg, &staged, error))
                        return FALSE;
                source = staged;
        }
        if (!source || stat(source, &st) < 0)
                return kiln_invalid(error, v->arg, "source '%s': %s", source ? source : "",
                                    g_strerror(errno));
        /* `U` changes the owner of what is bound (the staged mount, for a descriptor). */
        if ((v->flags & KILN_RUN_VOLUME_CHOWN) &&
            (!run_user_host_ids(s, &uid, &gid, error) || !chown_tree(v->arg, source, uid, gid, error)))
                return FALSE;
        /* overlayfs splits lowerdir= at ':' and the options at ','; uid 0's path may hold either. */
        if (v->kind == KILN_RUN_VOLUME_OVERLAY && strpbrk(source, ":,\\"))
                return kiln_invalid(error, v->arg, "an overlay's source cannot contain ':', ',' or '\\'");
        if (v->kind == KILN_RUN_VOLUME_OVERLAY) {
                if (!mount_overlay(s, plan, v, source, &st, &merged, error))
                        return FALSE;
                source = merged; /* the runtime binds the overlay kilnd mounted */
        }
        mount.options = keep_list(s, g_strdupv(v->options));
        mount.source = keep(s, g_strdup(source));
        mount.destination = keep(s, g_strdup(v->destination));
        g_array_append_val(s->mounts, mount);
        return TRUE;
}

/* A device node of the resolved list (run-devices.h): its type and numbers are what kilnd stat()ed
 * before authorization, never anything the caller or a CDI spec said. */
static void add_device(SpecScratch *s, const KilnRunDevice *r)
{
        KilnDevice d = {0};

        d.path = r->path;
        d.host_path = r->host_path;
        d.type = r->type;
        d.major = r->major;
        d.minor = r->minor;
        d.file_mode = r->file_mode;
        d.uid = r->uid;
        d.gid = r->gid;
        d.access = r->access;
        g_array_append_val(s->devices, d);
}

/* A CDI bind mount, as a volume's: checked by the spec generator's allow-list like any other. */
static void add_device_mount(SpecScratch *s, const KilnRunDeviceMount *m)
{
        KilnMount mount = {0};

        mount.type = KILN_MOUNT_BIND;
        mount.source = m->source;
        mount.destination = m->destination;
        mount.options = (const char *const *)m->options;
        mount.arg = m->arg;
        g_array_append_val(s->mounts, mount);
}

/* ---- network files (network.h): a run's settings win over the builder's ---- */

static char **first_list(char **a, char **b)
{
        return a ? a : b;
}

/* The host's first IPv4 address that is not loopback: with the host's network, /etc/hosts names it for the
 * container's hostname, as buildah does (127.0.1.1 would be the host's own loopback). */
static char *host_address(void)
{
        struct ifaddrs *list = NULL;
        char *found = NULL;

        if (getifaddrs(&list) < 0)
                return NULL;
        for (struct ifaddrs *i = list; i && !found; i = i->ifa_next) {
                char text[INET_ADDRSTRLEN];
                if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET && !(i->ifa_flags & IFF_LOOPBACK) &&
                    (i->ifa_flags & IFF_UP) &&
                    inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, text, sizeof(text)))
                        found = g_strdup(text);
        }
        freeifaddrs(list);
        return found;
}

/* The host's /etc/hosts plus the container's name, as buildah writes it; then host.containers.internal
 * where the network maps the host's loopback, and the run's add_host entries (NAME:IP, checked). */
static char *hosts_file(const char *hostname, gboolean host_network, const char *host_loopback,
                        char **add_host)
{
        g_autofree char *host = NULL;
        g_autofree char *own = host_network ? host_address() : NULL;
        GString *out = g_string_new(NULL);
        gsize len = 0;

        if (!g_file_get_contents("/etc/hosts", &host, &len, NULL) || len > HOST_FILE_MAX) {
                g_free(host);
                host = g_strdup("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        }
        g_string_append_printf(out, "%s%s%s\t%s\n", host, g_str_has_suffix(host, "\n") ? "" : "\n",
                               own ? own : "127.0.1.1", hostname);
        if (host_loopback)
                g_string_append_printf(out, "%s\thost.containers.internal\n", host_loopback);
        for (char **a = add_host; a && *a; a++) {
                const char *colon = strchr(*a, ':');
                if (colon)
                        g_string_append_printf(out, "%s\t%.*s\n", colon + 1, (int)(colon - *a), *a);
        }
        return g_string_free(out, FALSE);
}

/* The host's resolv.conf; with a network of its own, loopback nameservers are of no use inside. A run's
 * dns (or the builder's) replaces the nameservers, dns_search the search line, dns_option the options;
 * @helper_nameserver (slirp4netns's own forwarder) comes first when the run names none. dns=none: no file
 * (NULL), as buildah's --dns=none. */
static char *resolv_conf_file(gboolean private_network, const char *helper_nameserver, char **dns,
                              char **search, char **options)
{
        g_autofree char *host = NULL;
        g_auto(GStrv) lines = NULL;
        GString *out = g_string_new(NULL);
        gsize len = 0;

        if (dns && dns[0] && g_str_equal(dns[0], "none"))
                return g_string_free(out, TRUE), NULL;
        if (!g_file_get_contents("/etc/resolv.conf", &host, &len, NULL) || len > HOST_FILE_MAX)
                g_clear_pointer(&host, g_free);
        if (search && search[0]) {
                g_autofree char *joined = g_strjoinv(" ", search);
                g_string_append_printf(out, "search %s\n", joined);
        }
        if (dns && dns[0]) {
                for (char **d = dns; *d; d++)
                        g_string_append_printf(out, "nameserver %s\n", *d);
        } else if (helper_nameserver) {
                g_string_append_printf(out, "nameserver %s\n", helper_nameserver);
        }
        if (options && options[0]) {
                g_autofree char *joined = g_strjoinv(" ", options);
                g_string_append_printf(out, "options %s\n", joined);
        }
        lines = g_strsplit(host ? host : "", "\n", -1);
        for (char **l = lines; *l; l++) {
                g_autofree char *t = g_strstrip(g_strdup(*l));
                /* What the run set replaces the host's line of the same kind. */
                if ((search && search[0] &&
                     (g_str_has_prefix(t, "search") || g_str_has_prefix(t, "domain"))) ||
                    (dns && dns[0] && g_str_has_prefix(t, "nameserver")) ||
                    (options && options[0] && g_str_has_prefix(t, "options")))
                        continue;
                if (private_network && g_str_has_prefix(t, "nameserver") &&
                    (strstr(t, " 127.") || strstr(t, "\t127.") || strstr(t, " ::1") || strstr(t, "\t::1")))
                        continue;
                if (**l || l[1])
                        g_string_append_printf(out, "%s\n", *l);
        }
        return g_string_free(out, FALSE);
}

/* A file of kilnd's own in the bundle, owned by @uid:@gid (-1: root) with exactly @mode, whatever
 * kilnd's umask (0077) made of it. Paths are safe here: the bundle is kilnd's, fresh, and no caller
 * can enter it. */
static gboolean write_bundle_file(const char *bundle, const char *name, const char *contents, mode_t mode,
                                  uid_t uid, gid_t gid, char **ret_path, GError **error)
{
        g_autofree char *path = g_build_filename(bundle, name, NULL);

        if (!g_file_set_contents_full(path, contents, -1, G_FILE_SET_CONTENTS_NONE, mode, error))
                return FALSE;
        /* chown before chmod: chown clears set-id bits, and there are none to keep. */
        if (lchown(path, uid, gid) < 0 || chmod(path, mode) < 0)
                return kiln_fail(error, KILN_ERROR_CODE_FAILED, "Cannot set the owner and mode of %s: %s",
                                 name, g_strerror(errno));
        if (ret_path)
                *ret_path = g_steal_pointer(&path);
        return TRUE;
}

static char *resolve_runtime(char *const *runtimes, const char *requested, GError **error)
{
        const char *name = requested && *requested ? requested : runtimes[0];
        char *path;

        if (!name) {
                kiln_fail(error, KILN_ERROR_CODE_RUNTIME_FAILED, "No OCI runtime was found on this host");
                return NULL;
        }
        /* An absolute path is kept when executable, a name looked up in kilnd's PATH. */
        path = g_find_program_in_path(name);
        if (!path) {
                kiln_fail(error, KILN_ERROR_CODE_INVALID_ARGUMENT,
                          "Invalid runtime: '%s' is not an executable runtime", name);
                return NULL;
        }
        return path;
}

/* network=pasta or slirp4netns: kilnd makes the run's network namespace itself, in the bundle, and the spec
 * joins it by path (run/network.h); the helper starts with the runtime. Owned by the builder's
 * owner, as the helper runs. */
static gboolean fill_network(KilnSpecInput *in, KilnRunPlan *plan, const KilnRunInput *run,
                             const KilnRunOptions *o, GError **error)
{
        const char *network = kiln_network_effective(run->config, o->network, run->builder_config->network);

        if (!kiln_network_needs_helper(network))
                return kiln_namespace_parse("network", network, TRUE, &in->network, error);
        plan->network = kiln_network_new(
                run->config, network, first_list(o->network_options, run->builder_config->network_options),
                run->builder_owner, (gid_t)-1, plan->bundle_dir, error);
        if (!plan->network)
                return FALSE;
        in->network = (KilnNamespace){KILN_NAMESPACE_PATH, kiln_network_netns_path(plan->network)};
        return TRUE;
}

static gboolean fill_namespaces(KilnSpecInput *in, const KilnRunOptions *o, GError **error)
{
        return kiln_namespace_parse("pid", o->pid ? o->pid : "", FALSE, &in->pid, error) &&
               kiln_namespace_parse("ipc", o->ipc ? o->ipc : "", FALSE, &in->ipc, error) &&
               kiln_namespace_parse("uts", o->uts ? o->uts : "", FALSE, &in->uts, error) &&
               kiln_namespace_parse("cgroupns", o->cgroupns ? o->cgroupns : "", FALSE, &in->cgroup, error);
}

/* ---- run parity: supplementary groups (group_add) ---- */
/* After the user's own groups: each group_add entry as a gid of the image's /etc/group (@group), then
 * for "keep-groups" (uid 0 only, run-volumes.c) the caller's host groups, which exist only without a
 * user namespace. In a user namespace each gid must be mapped, or setgroups would fail in the runtime. */
static gboolean fill_group_add(SpecScratch *s, const KilnRunOptions *o, const char *group, gsize group_len,
                               GError **error)
{
        guint32 host;

        for (guint i = 0; o->resolved_group_add && o->resolved_group_add[i]; i++) {
                const char *arg = o->resolved_group_args[i];
                if (!kiln_group_add_resolve(group, group_len, arg, o->resolved_group_add[i], s->gids, error))
                        return FALSE;
                if (s->in.n_gid_mappings > 0 &&
                    !kiln_idmap_to_host(s->in.gid_mappings, s->in.n_gid_mappings,
                                        g_array_index(s->gids, guint32, s->gids->len - 1), &host))
                        return kiln_invalid(error, arg,
                                            "gid %u is not mapped in the builder's user namespace",
                                            g_array_index(s->gids, guint32, s->gids->len - 1));
        }
        if (o->caller_groups && s->in.n_gid_mappings > 0)
                return kiln_invalid(error, "group_add",
                                    "'keep-groups' needs a run without a user namespace (userns host)");
        for (guint i = 0; o->caller_groups && i < o->caller_groups->len; i++) {
                guint32 gid = g_array_index(o->caller_groups, guint32, i);
                gboolean seen = FALSE;
                for (guint j = 0; j < s->gids->len && !seen; j++)
                        seen = g_array_index(s->gids, guint32, j) == gid;
                if (!seen && s->gids->len < KILN_MAX_ADDITIONAL_GIDS)
                        g_array_append_val(s->gids, gid);
        }
        return TRUE;
}

static gboolean fill_user(SpecScratch *s, int rootfd, const char *spec, const KilnRunOptions *o,
                          GError **error)
{
        g_autofree char *passwd = NULL, *group = NULL;
        gsize passwd_len = 0, group_len = 0;
        g_autoptr(GError) local = NULL;
        char *home = NULL;

        /* Only regular files inside the image, bounded; a missing file is an image without accounts. */
        if (!kiln_rootfs_read_file(rootfd, "/etc/passwd", ACCOUNT_FILE_MAX, &passwd, &passwd_len, &local)) {
                if (!g_error_matches(local, G_IO_ERROR, G_IO_ERROR_NOT_FOUND)) {
                        g_propagate_prefixed_error(error, g_steal_pointer(&local),
                                                   "Cannot read /etc/passwd: ");
                        return FALSE;
                }
                g_clear_error(&local);
        }
        if (!kiln_rootfs_read_file(rootfd, "/etc/group", ACCOUNT_FILE_MAX, &group, &group_len, &local)) {
                if (!g_error_matches(local, G_IO_ERROR, G_IO_ERROR_NOT_FOUND)) {
                        g_propagate_prefixed_error(error, g_steal_pointer(&local),
                                                   "Cannot read /etc/group: ");
                        return FALSE;
                }
        }
        if (!kiln_resolve_user(spec ? spec : "", passwd, passwd_len, group, group_len, &s->in.uid,
                               &s->in.gid, &s->gids, &home, error))
                return FALSE;
        s->in.home = keep(s, home);
        if (!fill_group_add(s, o, group, group_len, error))
                return FALSE;
        s->in.additional_gids = (const guint32 *)s->gids->data;
        s->in.n_additional_gids = s->gids->len;
        return TRUE;
}

static gboolean fill_seccomp(const KilnRunInput *run, SpecScratch *s, const char *profile, GError **error)
{
        g_auto(GStrv) caps = NULL;
        g_autofree char *path = NULL;

        if (g_strcmp0(profile, "unconfined") == 0)
                return TRUE;
        caps = kiln_spec_capabilities(&s->in, error);
        if (!caps)
                return FALSE;
        path = g_strdup_printf("%s/seccomp/%s.json", run->config->data_dir,
                               profile && *profile ? profile : "default");
        s->seccomp = kiln_seccomp_profile_load(run->seccomp_cache, path, (const char *const *)caps, error);
        s->in.seccomp = s->seccomp;
        return s->seccomp != NULL;
}

static gboolean fill_mounts(SpecScratch *s, KilnRunPlan *plan, const KilnRunOptions *o, GError **error)
{
        /* The list the authorization judged, never the option strings again. */
        if (!o->resolved_volumes)
                return kiln_fail(error, KILN_ERROR_CODE_FAILED, "The run's volumes were not resolved");
        for (guint i = 0; i < o->resolved_volumes->len; i++)
                if (!add_volume(s, plan, o->resolved_volumes->pdata[i], error))
                        return FALSE;
        if (!o->resolved_devices)
                return kiln_fail(error, KILN_ERROR_CODE_FAILED, "The run's devices were not resolved");
        for (guint i = 0; i < o->resolved_devices->devices->len; i++)
                add_device(s, o->resolved_devices->devices->pdata[i]);
        for (guint i = 0; i < o->resolved_devices->mounts->len; i++)
                add_device_mount(s, o->resolved_devices->mounts->pdata[i]);
        s->in.mounts = (const KilnMount *)s->mounts->data;
        s->in.n_mounts = s->mounts->len;
        s->in.devices = (const KilnDevice *)s->devices->data;
        s->in.n_devices = s->devices->len;
        return TRUE;
}

static gboolean write_generated_files(SpecScratch *s, const KilnRunInput *run, const KilnRunPlan *plan,
                                      const KilnRunOptions *o, GError **error)
{
        const KilnBuilderConfig *bc = run->builder_config;
        const char *bundle = plan->bundle_dir;
        const char *hostname = first_set(o->hostname, bc->hostname);
        g_autofree char *short_id = g_strndup(run->builder_id, 12);
        g_autofree char *name = g_strdup(hostname ? hostname : short_id);
        gboolean host_network = s->in.network.mode == KILN_NAMESPACE_HOST;
        gboolean no_hosts = o->no_hosts >= 0 ? o->no_hosts > 0 : g_strcmp0(bc->no_hosts, "true") == 0;
        g_autofree char *hosts = hosts_file(name, host_network,
                                            plan->network ? kiln_network_host_address(plan->network) : NULL,
                                            first_list(o->add_host, bc->add_host));
        g_autofree char *resolv = resolv_conf_file(
                !host_network, plan->network ? kiln_network_nameserver(plan->network) : NULL,
                first_list(o->dns, bc->dns), first_list(o->dns_search, bc->dns_search),
                first_list(o->dns_option, bc->dns_option));
        g_autofree char *hostname_file = g_strdup_printf("%s\n", name);
        g_autofree char *containerenv =
                g_strdup_printf("engine=\"kiln-%s\"\nname=\"%s\"\nid=\"%s\"\n"
                                "image=\"%s\"\nimageid=\"%s\"\nrootless=%d\n",
                                KILN_VERSION, run->builder_name, run->builder_id, run->builder_from,
                                run->builder_layer, s->in.uid_mappings ? 1 : 0);
        const struct {
                const char *name;
                const char *contents;
                const char **target;
        } files[] = {
                {"hosts", no_hosts ? NULL : hosts, &s->in.files.hosts},
                {"resolv.conf", resolv, &s->in.files.resolv_conf},
                {"hostname", o->no_hostname ? NULL : hostname_file, &s->in.files.hostname},
                {"containerenv", containerenv, &s->in.files.containerenv},
        };
        guint32 root_uid = 0, root_gid = 0;

        /* Readable by every user of the container, as buildah makes them (apt resolves names after
         * dropping to its own user), and owned by the container's root, not by an unmapped host root. */
        if (s->in.n_uid_mappings > 0 &&
            (!kiln_idmap_to_host(s->in.uid_mappings, s->in.n_uid_mappings, 0, &root_uid) ||
             !kiln_idmap_to_host(s->in.gid_mappings, s->in.n_gid_mappings, 0, &root_gid)))
                return kiln_invalid(error, "userns", "the container's root is not mapped");
        for (size_t i = 0; i < G_N_ELEMENTS(files); i++) {
                char *path = NULL;
                if (!files[i].contents)
                        continue;
                if (!write_bundle_file(bundle, files[i].name, files[i].contents, 0644, root_uid, root_gid,
                                       &path, error))
                        return FALSE;
                *files[i].target = keep(s, path);
        }
        return TRUE;
}

char *kiln_run_isolate_path(const KilnConfig *c)
{
        return g_build_filename(c->helper_dir, "kiln-isolate", NULL);
}

/* kiln-isolate keeps its compiled filters under kilnd's runtime directory, not in its own default
 * place. */
static void add_isolate_arguments(GStrvBuilder *args, KilnStorage *storage)
{
        g_strv_builder_add_many(args, "--cache-dir", kiln_storage_isolate_cache(storage), NULL);
}

char **kiln_run_isolate_globals(const KilnConfig *c, KilnStorage *storage)
{
        g_autofree char *path = kiln_run_isolate_path(c);
        g_autoptr(GStrvBuilder) args = g_strv_builder_new();
        g_auto(GStrv) arguments = NULL;

        add_isolate_arguments(args, storage);
        arguments = g_strv_builder_end(args);
        return kiln_runtime_global_argv(path, (const char *const *)arguments,
                                        kiln_storage_isolate_root(storage));
}

/* The runtime's global arguments: kiln-isolate's own, and for an OCI runtime the caller's
 * (run-privileged). */
static char **runtime_arguments(const KilnRunPlan *plan, const KilnRunOptions *o)
{
        g_autoptr(GStrvBuilder) args = g_strv_builder_new();

        if (plan->isolate)
                add_isolate_arguments(args, plan->storage);
        if (plan->resources.systemd)
                g_strv_builder_add(args, "--systemd-cgroup");
        if (o->runtime_args)
                g_strv_builder_addv(args, (const char **)o->runtime_args);
        return g_strv_builder_end(args);
}

/* The runtime sets up the container's mounts as its mapped root, which may not enter kilnd's root-only
 * runtime directory: kiln-runtime-ns runs it where only this run's bundle, root file system and the
 * runtime's state show there, through directories anyone may enter (see kiln-runtime-ns.c). The
 * bundle itself becomes enterable; outside that namespace its parent still shuts everyone out. */
static gboolean run_in_intermediate_namespace(KilnRunPlan *plan, const KilnConfig *c, GError **error)
{
        g_autoptr(GStrvBuilder) args = g_strv_builder_new();
        g_auto(GStrv) runtime_args = g_steal_pointer(&plan->runtime_args);

        if (chmod(plan->bundle_dir, 0711) < 0)
                return kiln_fail(error, KILN_ERROR_CODE_FAILED, "chmod %s: %s", plan->bundle_dir,
                                 g_strerror(errno));
        g_strv_builder_add_many(args, c->runtime_dir, plan->bundle_dir, plan->rootfs, plan->state_root,
                                NULL);
        if (plan->isolate)
                g_strv_builder_add(args, kiln_storage_isolate_cache(plan->storage));
        g_strv_builder_add_many(args, "--", plan->runtime, NULL);
        if (runtime_args)
                g_strv_builder_addv(args, (const char **)runtime_args);
        plan->runtime_args = g_strv_builder_end(args);
        g_free(plan->runtime);
        plan->runtime = g_build_filename(c->helper_dir, "kiln-runtime-ns", NULL);
        return TRUE;
}

/* A command given with a '/' is not searched for, but it must still exist and be executable inside
 * the image, or the run ends as a shell's would (127, 126) instead of as a runtime failure. */
static gboolean check_executable(KilnRunPlan *plan, int rootfd)
{
        _cleanup_close_ int fd = kiln_rootfs_open(rootfd, plan->argv[0], O_PATH, 0);
        struct stat st;

        if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111))
                return TRUE;
        plan->early_exit_status = fd < 0 && fd != -EACCES ? 127 : 126;
        plan->early_message = g_strdup_printf("kiln: %s: %s\n", plan->argv[0],
                                              plan->early_exit_status == 127 ? "No such file or directory"
                                                                             : "Permission denied");
        return TRUE;
}

/* The command: the run's argv, or Entrypoint + Cmd; argv[0] looked up in the image's PATH. Not found
 * or not executable ends the run before any container, with a shell's status. */
static gboolean resolve_command(KilnRunPlan *plan, SpecScratch *s, int rootfd, const KilnBuilderConfig *c,
                                char **argv, GError **error)
{
        g_auto(GStrv) env = NULL;
        g_autoptr(GError) local = NULL;
        const char *path_value = NULL;
        char *resolved = NULL;

        plan->argv = argv && argv[0] ? g_strdupv(argv) : concat_lists(c->entrypoint, c->cmd);
        if (!plan->argv[0] || !*plan->argv[0])
                return kiln_fail(error, KILN_ERROR_CODE_INVALID_ARGUMENT,
                                 "Invalid argv: it is empty and the builder has no Entrypoint or Cmd");

        s->in.argv = (const char *const *)plan->argv;
        env = kiln_spec_environment(&s->in, error);
        if (!env)
                return FALSE;
        for (char **e = env; *e; e++)
                if (g_str_has_prefix(*e, "PATH="))
                        path_value = *e + 5;
        if (!kiln_rootfs_lookup_command(rootfd, plan->argv[0], path_value, s->in.cwd, &resolved, &local)) {
                gboolean denied = g_error_matches(local, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED);
                if (!denied && !g_error_matches(local, G_IO_ERROR, G_IO_ERROR_NOT_FOUND)) {
                        g_propagate_error(error, g_steal_pointer(&local));
                        return FALSE;
                }
                plan->early_exit_status = denied ? 126 : 127;
                plan->early_message = g_strdup_printf("kiln: %s: %s\n", plan->argv[0],
                                                      denied ? "permission denied" : "command not found");
                return TRUE;
        }
        g_free(plan->argv[0]);
        plan->argv[0] = resolved;
        return check_executable(plan, rootfd);
}

KilnRunPlan *kiln_run_prepare(const KilnRunInput *run, char **argv, KilnRunOptions *o, GError **error)
{
        const KilnBuilderConfig *bc = run->builder_config;
        g_autoptr(KilnRunPlan) plan = g_new0(KilnRunPlan, 1);
        g_auto(SpecScratch) s = {0};
        g_autoptr(JsonNode) spec = NULL;
        g_autofree char *json = NULL;
        _cleanup_close_ int rootfd = -1;
        uid_t host_uid = (uid_t)-1; /* set by run_user_host_ids() */
        gid_t host_gid = (gid_t)-1;
        const char *isolation = first_set(o->isolation, bc->isolation);
        gboolean private_userns = kiln_run_wants_userns(bc, o);
        g_auto(KilnIdMaps) maps = {0};
        const char *user = first_set(o->user, bc->user);
        const char *cwd = first_set(o->working_dir, bc->working_dir);

        plan->storage = run->storage;
        plan->lease = run->lease;
        plan->builder_id = g_strdup(run->builder_id);
        plan->early_exit_status = -1;
        s.strings = g_ptr_array_new_with_free_func(g_free);
        s.string_lists = g_ptr_array_new_with_free_func((GDestroyNotify)g_strfreev);
        s.mounts = g_array_new(FALSE, TRUE, sizeof(KilnMount));
        s.devices = g_array_new(FALSE, TRUE, sizeof(KilnDevice));
        s.caches = run->caches; /* run parity */

        if (g_strcmp0(isolation, "chroot") == 0) {
                /* One generator, two executors: kiln-isolate takes the very config.json runc would. It
                 * keeps its state apart from the OCI runtime's. */
                if (o->runtime && *o->runtime) {
                        kiln_invalid(error, "runtime", "it does not apply to isolation 'chroot'");
                        return NULL;
                }
                plan->runtime = kiln_run_isolate_path(run->config);
                plan->isolate = TRUE;
                plan->state_root = g_strdup(kiln_storage_isolate_root(run->storage));
        } else {
                plan->runtime = resolve_runtime(run->runtimes, o->runtime, error);
                plan->state_root = g_strdup(kiln_storage_runtime_root(run->storage));
        }
        if (!plan->runtime)
                return NULL;

        /* The root file system, held mounted for the whole run; ID-mapped in a user namespace. */
        if (private_userns) {
                if (!run->lease.id_maps(run->lease.keeper, run->builder_owner, &maps, error))
                        return NULL;
                s.in.uid_mappings = (const KilnIdMapping *)maps.uid_map->data;
                s.in.n_uid_mappings = maps.uid_map->len;
                s.in.gid_mappings = (const KilnIdMapping *)maps.gid_map->data;
                s.in.n_gid_mappings = maps.gid_map->len;
        }
        plan->rootfs =
                run->lease.acquire(run->lease.keeper, run->builder_id, private_userns ? &maps : NULL, error);
        if (!plan->rootfs)
                return NULL;
        rootfd = open(plan->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0) {
                kiln_fail(error, KILN_ERROR_CODE_FAILED, "open '%s': %s", plan->rootfs, g_strerror(errno));
                return NULL;
        }

        plan->container_id = g_strdup(run->container_id);
        plan->bundle_dir = kiln_storage_new_bundle(run->storage, plan->container_id, error);
        if (!plan->bundle_dir)
                return NULL;

        s.in.id = run->builder_id;
        s.in.rootfs = plan->rootfs;
        s.in.builder_env = (const char *const *)bc->env;
        /* The run's environment, then what its CDI devices set (podman applies CDI edits last too). */
        s.in.env = o->resolved_devices && o->resolved_devices->env[0]
                           ? keep_list(&s, concat_lists(o->env, o->resolved_devices->env))
                           : (const char *const *)o->env;
        s.in.cwd = cwd ? cwd : "/";
        s.in.terminal = o->terminal;
        s.in.terminal_rows = o->rows;
        s.in.terminal_cols = o->cols;
        s.in.no_new_privileges =
                o->no_new_privileges >= 0 ? o->no_new_privileges > 0 : run->config->no_new_privileges;
        s.in.builder_cap_add = (const char *const *)bc->cap_add;
        s.in.builder_cap_drop = (const char *const *)bc->cap_drop;
        s.in.cap_add = (const char *const *)o->cap_add;
        s.in.cap_drop = (const char *const *)o->cap_drop;
        s.in.ulimits = keep_list(&s, concat_lists(bc->ulimits, o->ulimits));
        s.in.hostname = first_set(o->hostname, bc->hostname);
        /* Checked when the options were read (run-options.c); unset is 0. */
        if (!o->shm_size || !kiln_parse_size(o->shm_size, &s.in.shm_size))
                s.in.shm_size = 0;
        s.in.last_cap = (int)cap_max_bits() - 1;
        s.in.bounding_set = run->bounding_set;
        /* Host facts the generator cannot look up itself (it is pure). */
        s.in.host_lacks_dev_shm = !g_file_test("/dev/shm", G_FILE_TEST_IS_DIR);
        s.in.host_lacks_dev_mqueue = !g_file_test("/dev/mqueue", G_FILE_TEST_IS_DIR);
        s.in.annotations = (const char *const *)bc->labels;

        if (!fill_namespaces(&s.in, o, error) || !fill_user(&s, rootfd, user, o, error) ||
            !run_user_host_ids(&s, &host_uid, &host_gid, error))
                return NULL;
        /* The working directory exists before the process starts, owned by the run's user. */
        if (!kiln_rootfs_mkdir_p(rootfd, s.in.cwd, 0755, host_uid, host_gid, error))
                return NULL;
        /* Images: the image's Volumes exist in every run, empty unless a run wrote there, owned by
         * the container's root (docs/images.md). */
        for (const char *const *v = run->image_volumes; v && *v; v++) {
                guint32 ru = 0, rg = 0;
                if (s.in.n_uid_mappings > 0 &&
                    (!kiln_idmap_to_host(s.in.uid_mappings, s.in.n_uid_mappings, 0, &ru) ||
                     !kiln_idmap_to_host(s.in.gid_mappings, s.in.n_gid_mappings, 0, &rg)))
                        break;
                if (!kiln_rootfs_mkdir_p(rootfd, *v, 0755, ru, rg, error)) {
                        g_prefix_error(error, "Image volume: ");
                        return NULL;
                }
        }
        if (!resolve_command(plan, &s, rootfd, bc, argv, error))
                return NULL;
        if (plan->early_exit_status >= 0)
                return g_steal_pointer(&plan);

        /* After the command was found: a run that cannot start makes no network. */
        if (!fill_network(&s.in, plan, run, o, error) || !fill_mounts(&s, plan, o, error) ||
            !fill_seccomp(run, &s, o->seccomp_profile, error) ||
            !write_generated_files(&s, run, plan, o, error))
                return NULL;
        /* The run's own cgroup and its limits (cgroup.h), and the size of a tmpfs that names none. */
        kiln_cgroup_resolve(run->config, o->pids_limit, o->memory, o->cpu_weight, run->builder_owner,
                            plan->container_id, plan->isolate, &plan->resources);
        s.in.cgroups_path = plan->resources.cgroups_path;
        s.in.pids_limit = plan->resources.pids_limit;
        s.in.memory = plan->resources.memory;
        s.in.cpu_weight = plan->resources.cpu_weight;
        s.in.cgroup_v2 = plan->resources.cgroup_v2;
        s.in.tmpfs_default_size = run->config->tmpfs_max_size;
        fill_hooks(plan, &s, run->config, o->resolved_devices);
        spec = kiln_spec_generate(&s.in, error);
        if (!spec)
                return NULL;
        json = kiln_spec_to_data(spec, FALSE, NULL);
        if (!write_bundle_file(plan->bundle_dir, "config.json", json, 0600, 0, 0, NULL, error))
                return NULL;
        plan->runtime_args = runtime_arguments(plan, o);
        if (private_userns && !run_in_intermediate_namespace(plan, run->config, error))
                return NULL;
        return g_steal_pointer(&plan);
}

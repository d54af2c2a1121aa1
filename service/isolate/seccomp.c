/* SPDX-License-Identifier: Apache-2.0 */
/* The seccomp filter: built in the parent by the core's kiln_seccomp_filter_new() — the same rules runc
 * loads from the same linux.seccomp — exported as BPF, and loaded by the init as late as it can be.
 *
 * Building a profile like kiln's default (some 400 calls on three architectures) takes libseccomp about
 * 10 ms, most of a run. The BPF of a filter is a pure function of the linux.seccomp object, libseccomp and
 * the kernel, so it is kept in a cache directory (crun does the same), named by a SHA-256 of all three:
 * the next run with the same filter loads the stored program. The directory must be root's own and
 * private; a stored program is only ever read back from there, checked for size, and loaded as it is. */
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "isolate.h"
#include "spec/seccomp-profile.h"

#define CACHE_FORMAT "kiln-isolate-bpf-2" /* 2: binary-tree programs */
#define MAX_INSNS 4096                    /* BPF_MAXINSNS */

struct IsoSeccomp {
        struct sock_filter *insns;
        gsize n_insns;
        unsigned int flags; /* SECCOMP_FILTER_FLAG_* from linux.seccomp.flags */
};

void iso_seccomp_free(IsoSeccomp *filter)
{
        if (!filter)
                return;
        g_free(filter->insns);
        g_free(filter);
}

static gboolean read_flags(JsonNode *seccomp, unsigned int *flags, GError **error)
{
        static const struct {
                const char *name;
                unsigned int flag;
        } table[] = {
                {"SECCOMP_FILTER_FLAG_TSYNC", 0}, /* one thread: nothing to synchronize */
                {"SECCOMP_FILTER_FLAG_LOG", SECCOMP_FILTER_FLAG_LOG},
                {"SECCOMP_FILTER_FLAG_SPEC_ALLOW", SECCOMP_FILTER_FLAG_SPEC_ALLOW},
        };
        JsonObject *o = json_node_get_object(seccomp);
        JsonArray *a = json_object_has_member(o, "flags") ? json_object_get_array_member(o, "flags") : NULL;

        *flags = 0;
        for (guint i = 0; a && i < json_array_get_length(a); i++) {
                const char *name = json_array_get_string_element(a, i);
                size_t k;
                for (k = 0; name && k < G_N_ELEMENTS(table); k++)
                        if (g_str_equal(name, table[k].name))
                                break;
                if (!name || k == G_N_ELEMENTS(table))
                        return iso_fail(error, "config.json: linux.seccomp.flags[%u]: unknown flag '%s'", i,
                                        name ? name : "");
                *flags |= table[k].flag;
        }
        return TRUE;
}

static char *cache_key(JsonNode *seccomp)
{
        const struct scmp_version *v = seccomp_version();
        g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
        g_autofree char *text = json_to_string(seccomp, FALSE);
        g_autofree char *env = NULL;
        struct utsname u;

        if (uname(&u) < 0)
                return NULL;
        env = g_strdup_printf("%s\n%u.%u.%u api %u\n%s %s %s\n", CACHE_FORMAT, v->major, v->minor, v->micro,
                              seccomp_api_get(), u.sysname, u.release, u.machine);
        g_checksum_update(sum, (const guchar *)env, -1);
        g_checksum_update(sum, (const guchar *)text, -1);
        return g_strconcat(g_checksum_get_string(sum), ".bpf", NULL);
}

/* The cache directory, or -1 when there is none we can trust (then every run compiles). */
static int open_cache(const char *dir)
{
        _cleanup_close_ int fd = -1;
        struct stat st;

        if (!dir)
                return -1;
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return -1;
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0 || st.st_uid != geteuid() || (st.st_mode & 0077))
                return -1;
        return kiln_steal_fd(&fd);
}

static bool valid_size(gsize bytes)
{
        return bytes > 0 && bytes % sizeof(struct sock_filter) == 0 &&
               bytes / sizeof(struct sock_filter) <= MAX_INSNS;
}

static bool cache_read(int dirfd, const char *name, IsoSeccomp *filter)
{
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;
        ssize_t n;

        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || !valid_size((gsize)st.st_size))
                return false;
        filter->insns = g_malloc((gsize)st.st_size);
        n = read(fd, filter->insns, (size_t)st.st_size);
        if (n != st.st_size) {
                g_clear_pointer(&filter->insns, g_free);
                return false;
        }
        filter->n_insns = (gsize)st.st_size / sizeof(struct sock_filter);
        return true;
}

static void cache_write(int dirfd, const char *name, const IsoSeccomp *filter)
{
        g_autofree char *tmp = g_strdup_printf(".%s.%d", name, (int)getpid());
        size_t len = filter->n_insns * sizeof(struct sock_filter);
        _cleanup_close_ int fd =
                openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);

        /* Written whole, then renamed into place: a reader sees a complete program or none. */
        if (fd < 0)
                return;
        if (write(fd, filter->insns, len) != (ssize_t)len || renameat(dirfd, tmp, dirfd, name) < 0)
                (void)unlinkat(dirfd, tmp, 0);
}

static gboolean compile(JsonNode *seccomp, IsoSeccomp *filter, GError **error)
{
        g_autoptr(GError) local = NULL;
        _cleanup_close_ int fd = -1;
        scmp_filter_ctx ctx;
        struct stat st;
        int r;

        ctx = kiln_seccomp_filter_new(seccomp, &local);
        if (!ctx)
                return iso_fail(error, "config.json: linux.seccomp: %s", local->message);
        /* The same rules, compiled as a binary tree of syscall numbers rather than a list: a longer
         * program, but each syscall (and the kernel's per-syscall action cache, built when the filter
         * is loaded) walks a short path through it. Loading kiln's default profile takes about
         * 0.45 ms instead of 0.9. Without the attribute (libseccomp < 2.5) the list it is. */
        (void)seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
        fd = memfd_create("kiln-isolate-bpf", MFD_CLOEXEC);
        if (fd < 0) {
                seccomp_release(ctx);
                return iso_fail_errno(error, errno, "memfd_create");
        }
        r = seccomp_export_bpf(ctx, fd);
        seccomp_release(ctx);
        if (r < 0)
                return iso_fail_errno(error, -r, "seccomp_export_bpf");
        if (fstat(fd, &st) < 0 || !valid_size((gsize)st.st_size))
                return iso_fail(error, "seccomp_export_bpf: a program of %lld bytes", (long long)st.st_size);
        filter->insns = g_malloc((gsize)st.st_size);
        if (pread(fd, filter->insns, (size_t)st.st_size, 0) != st.st_size)
                return iso_fail_errno(error, errno, "read the seccomp program back");
        filter->n_insns = (gsize)st.st_size / sizeof(struct sock_filter);
        return TRUE;
}

IsoSeccomp *iso_seccomp_prepare(const IsoSpec *spec, const char *cache_dir, GError **error)
{
        g_autoptr(IsoSeccomp) filter = g_new0(IsoSeccomp, 1);
        g_autofree char *name = NULL;
        _cleanup_close_ int dirfd = -1;

        if (!spec->seccomp)
                return NULL;
        if (!JSON_NODE_HOLDS_OBJECT(spec->seccomp))
                return iso_fail(error, "config.json: linux.seccomp is not an object"), NULL;
        if (!read_flags(spec->seccomp, &filter->flags, error))
                return NULL;
        dirfd = open_cache(cache_dir);
        name = dirfd >= 0 ? cache_key(spec->seccomp) : NULL;
        if (name && cache_read(dirfd, name, filter))
                return g_steal_pointer(&filter);
        if (!compile(spec->seccomp, filter, error))
                return NULL;
        if (name)
                cache_write(dirfd, name, filter);
        return g_steal_pointer(&filter);
}

gboolean iso_seccomp_load(const IsoSeccomp *filter, GError **error)
{
        struct sock_fprog prog;

        if (!filter)
                return TRUE;
        prog = (struct sock_fprog){.len = (unsigned short)filter->n_insns, .filter = filter->insns};
        /* Safe by nature: a filter only ever narrows what this process and its descendants may call.
         * The kernel takes it only with no_new_privs set or CAP_SYS_ADMIN held (container.c). */
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, filter->flags, &prog) < 0)
                return iso_fail_errno(error, errno, "seccomp SECCOMP_SET_MODE_FILTER (%zu instructions)",
                                      filter->n_insns);
        return TRUE;
}

void iso_seccomp_probe(void)
{
        (void)seccomp_api_get();
}

/* SPDX-License-Identifier: Apache-2.0 */
/* kiln-import's reader: the forked child that becomes the caller and opens the tree.
 *
 * Everything here runs with the caller's uid, gids and supplementary groups and without any
 * capability, so every open is checked by the kernel exactly as if the caller had made it: a file
 * the caller cannot read cannot be opened for reading, a directory it cannot search cannot be
 * entered. The reader holds nothing of root's but the socket to its parent. It does not interpret
 * what it opens beyond choosing how to open it; its parent checks everything it receives. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/capability.h>

#include <glib.h>

#include "base/fd-passing.h"
#include "base/fs-util.h"
#include "import-protocol.h"
#include "layer-digest.h"
#include "base/kiln-common.h"

typedef struct Reader {
        int sock;
        uint32_t next_index;
        uint32_t n_entries; /* opened so far, the root included */
        uint32_t pending;   /* names read but not opened yet, in all directories on the way */
        unsigned in_flight;
        const char *root_display;
        size_t path_len;
        char path[KILN_IMPORT_MAX_PATH + 1]; /* of the entry being handled, relative to the root */
} Reader;

static _Noreturn void reader_send_error(Reader *r, uint32_t what, int error, const char *path);

static void reader_send(Reader *r, uint32_t kind, uint32_t parent, int32_t error, uint32_t what,
                        const char *name, size_t name_len, int fd)
{
        KilnImportRecord rec;

        if (name_len > sizeof(rec.name))
                name_len = sizeof(rec.name);
        memset(&rec.h, 0, sizeof(rec.h));
        rec.h.kind = kind;
        rec.h.parent = parent;
        rec.h.error = error;
        rec.h.what = what;
        rec.h.name_len = (uint32_t)name_len;
        if (name_len > 0)
                memcpy(rec.name, name, name_len);

        if (kiln_send_fds(r->sock, &rec, sizeof(rec.h) + name_len, &fd, fd >= 0 ? 1 : 0) < 0)
                _exit(1); /* the parent is gone or refused; it reports the failure */

        if (kind != KILN_IMPORT_RECORD_ENTRY)
                return;

        /* Flow control: wait for acknowledgements so that few descriptors are ever in flight. */
        r->in_flight++;
        while (r->in_flight >= KILN_IMPORT_WINDOW) {
                char ack;
                ssize_t n = recv(r->sock, &ack, 1, 0);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n != 1)
                        _exit(1);
                r->in_flight--;
        }
}

static _Noreturn void reader_send_error(Reader *r, uint32_t what, int error, const char *path)
{
        reader_send(r, KILN_IMPORT_RECORD_ERROR, 0, error, what, path, strlen(path), -1);
        _exit(1);
}

static const char *reader_display_path(Reader *r)
{
        return r->path_len == 0 ? r->root_display : r->path;
}

static int cmp_names(gconstpointer a, gconstpointer b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* All names in the directory @dfd except "." and "..", sorted bytewise. */
static GPtrArray *reader_read_names(Reader *r, int dfd)
{
        g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
        struct dirent *de;
        DIR *d;
        int fd;

        fd = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                reader_send_error(r, KILN_IMPORT_WHAT_READDIR, errno, reader_display_path(r));
        d = fdopendir(fd);
        if (!d) {
                int e = errno;
                close(fd);
                reader_send_error(r, KILN_IMPORT_WHAT_READDIR, e, reader_display_path(r));
        }
        rewinddir(d);
        for (;;) {
                errno = 0;
                de = readdir(d);
                if (!de)
                        break;
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (r->n_entries + r->pending >= KILN_IMPORT_MAX_ENTRIES) {
                        closedir(d);
                        reader_send_error(r, KILN_IMPORT_WHAT_TOO_MANY, 0, reader_display_path(r));
                }
                g_ptr_array_add(names, g_strdup(de->d_name));
                r->pending++;
        }
        if (errno != 0) {
                int e = errno;
                closedir(d);
                reader_send_error(r, KILN_IMPORT_WHAT_READDIR, e, reader_display_path(r));
        }
        closedir(d);

        g_ptr_array_sort(names, cmp_names);
        return g_steal_pointer(&names);
}

static void reader_walk(Reader *r, int dfd, uint32_t dir_index, unsigned depth)
{
        g_autoptr(GPtrArray) names = reader_read_names(r, dfd);
        size_t base_len = r->path_len;

        for (guint i = 0; i < names->len; i++) {
                const char *name = names->pdata[i];
                size_t name_len = strlen(name);
                size_t len = base_len == 0 ? name_len : base_len + 1 + name_len;
                _cleanup_close_ int fd = -1;
                struct stat st, st2;
                uint32_t index;
                int flags;

                if (len > KILN_IMPORT_MAX_PATH) {
                        r->path[base_len] = '\0';
                        reader_send_error(r, KILN_IMPORT_WHAT_PATH_TOO_LONG, 0, reader_display_path(r));
                }
                if (base_len > 0)
                        r->path[base_len] = '/';
                memcpy(r->path + (base_len == 0 ? 0 : base_len + 1), name, name_len);
                r->path[len] = '\0';
                r->path_len = len;

                r->pending--;
                if (++r->n_entries > KILN_IMPORT_MAX_ENTRIES)
                        reader_send_error(r, KILN_IMPORT_WHAT_TOO_MANY, 0, r->path);

                if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        reader_send_error(r, KILN_IMPORT_WHAT_STAT, errno, r->path);

                /* How to open decides what the kernel checks: directories and regular files are
                 * opened for reading (read permission checked as the caller); anything else only as a
                 * path, which neither reads it nor triggers a device's open. O_NOFOLLOW everywhere: a
                 * symlink is opened as itself. O_NONBLOCK: if the name became a FIFO meanwhile, the
                 * open does not hang (and the type check below fails). */
                if (S_ISDIR(st.st_mode))
                        flags = O_RDONLY | O_DIRECTORY;
                else if (S_ISREG(st.st_mode))
                        flags = O_RDONLY | O_NONBLOCK | O_NOCTTY;
                else
                        flags = O_PATH;
                fd = openat(dfd, name, flags | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0)
                        reader_send_error(r, KILN_IMPORT_WHAT_OPEN, errno, r->path);
                if (fstat(fd, &st2) < 0)
                        reader_send_error(r, KILN_IMPORT_WHAT_STAT, errno, r->path);
                if ((st2.st_mode & S_IFMT) != (st.st_mode & S_IFMT))
                        reader_send_error(r, KILN_IMPORT_WHAT_CHANGED, 0, r->path);
                if ((S_ISDIR(st2.st_mode) || S_ISREG(st2.st_mode)) && kiln_fd_on_pseudo_fs(fd, NULL) > 0)
                        reader_send_error(r, KILN_IMPORT_WHAT_PSEUDO_FS, 0, r->path);
                if (S_ISDIR(st2.st_mode) && depth + 1 > KILN_IMPORT_MAX_DEPTH)
                        reader_send_error(r, KILN_IMPORT_WHAT_TOO_DEEP, 0, r->path);

                index = r->next_index++;
                reader_send(r, KILN_IMPORT_RECORD_ENTRY, dir_index, 0, 0, name, name_len, fd);

                if (S_ISDIR(st2.st_mode))
                        reader_walk(r, fd, index, depth + 1);

                r->path_len = base_len;
                r->path[base_len] = '\0';
        }
}

/* Becomes the caller for good: supplementary groups, gids, uids, then checks that root cannot be had
 * back. Returns 0 or an errno. */
static int drop_privileges(const KilnImportReaderArgs *a)
{
        uid_t ru, eu, su;
        gid_t rg, eg, sg;

        if (setgroups(a->n_groups, a->groups) < 0)
                return errno;
        if (setresgid(a->gid, a->gid, a->gid) < 0)
                return errno;
        if (setresuid(a->uid, a->uid, a->uid) < 0)
                return errno;

        if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0)
                return errno;
        if (ru != a->uid || eu != a->uid || su != a->uid || rg != a->gid || eg != a->gid || sg != a->gid)
                return EPERM;

        if (a->uid != 0) {
                struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
                struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {{0}};

                /* Every uid is now non-zero, so the kernel has cleared the permitted and effective
                 * capabilities (unless securebits said otherwise); make sure, and that uid 0 is out of
                 * reach. */
                if (setresuid(0, 0, 0) == 0 || errno != EPERM)
                        return EPERM;
                if (syscall(SYS_capget, &hdr, data) < 0)
                        return errno;
                for (size_t i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
                        if (data[i].effective != 0 || data[i].permitted != 0)
                                return EPERM;
        }

        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return errno;
        return 0;
}

int kiln_import_reader_isolate(int sock, int src_fd)
{
        int keep[2] = {sock, src_fd};
        struct sigaction sa = {.sa_handler = SIG_DFL};
        int null_fd;

        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
        /* Nothing of root's stays open here but the socket: stdio becomes /dev/null (stdout is the
         * parent's result channel and the pipes belong to kilnd), every other descriptor is closed. */
        null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(null_fd, 1) < 0 || dup2(null_fd, 2) < 0)
                return errno;
        if (kiln_close_all_fds_except(keep, G_N_ELEMENTS(keep)) < 0)
                return errno;
        return 0;
}

_Noreturn void kiln_import_reader_run(const KilnImportReaderArgs *a)
{
        Reader r = {.sock = a->sock, .root_display = a->src_path ? a->src_path : "source directory"};
        _cleanup_close_ int root = -1;
        int e;

        e = kiln_import_reader_isolate(a->sock, a->src_fd);
        if (e != 0)
                reader_send_error(&r, KILN_IMPORT_WHAT_DROP, e, "descriptors");

        e = drop_privileges(a);
        if (e != 0)
                reader_send_error(&r, KILN_IMPORT_WHAT_DROP, e, "credentials");

        /* Set after the credential change (which clears it): the reader must not outlive its parent. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
                reader_send_error(&r, KILN_IMPORT_WHAT_DROP, errno, "parent death signal");
        if (getppid() != a->parent_pid)
                _exit(1);

        /* The source, opened as the caller. A path is resolved as the caller would resolve it
         * (symlinks in it included: that cannot reach anything the caller could not). An inherited
         * descriptor is reopened, so that the caller's read permission on it is checked, O_PATH
         * descriptors work, and the caller's file offset is not shared. */
        if (a->src_path)
                root = open(a->src_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOCTTY);
        else
                root = openat(a->src_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOCTTY);
        if (root < 0)
                reader_send_error(&r, KILN_IMPORT_WHAT_OPEN, errno, r.root_display);
        if (a->src_fd >= 0)
                close(a->src_fd);
        if (kiln_fd_on_pseudo_fs(root, NULL) > 0)
                reader_send_error(&r, KILN_IMPORT_WHAT_PSEUDO_FS, 0, r.root_display);

        r.n_entries = 1;
        r.next_index = 1;
        reader_send(&r, KILN_IMPORT_RECORD_ENTRY, KILN_IMPORT_NO_PARENT, 0, 0, "", 0, root);
        reader_walk(&r, root, 0, 0);
        reader_send(&r, KILN_IMPORT_RECORD_DONE, 0, 0, 0, NULL, 0, -1);

        /* Take the last acknowledgements, so that we do not leave unread data behind (which the kernel
         * reports to the parent as a connection reset). */
        while (r.in_flight > 0) {
                char ack;
                ssize_t n = recv(r.sock, &ack, 1, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n != 1)
                        break;
                r.in_flight--;
        }
        _exit(0);
}

/* For the image reader (image-read.c), which becomes the caller the same way. */
int kiln_import_become_caller(const KilnImportReaderArgs *args)
{
        return drop_privileges(args);
}

int kiln_import_exit_code_for_errno(int e)
{
        switch (e) {
        case ENOENT:
                return KILN_IMPORT_EXIT_NOT_FOUND;
        case EACCES:
        case EPERM:
                return KILN_IMPORT_EXIT_PERMISSION_DENIED;
        case ENOTDIR:
                return KILN_IMPORT_EXIT_NOT_DIRECTORY;
        default:
                return KILN_IMPORT_EXIT_FAILED;
        }
}

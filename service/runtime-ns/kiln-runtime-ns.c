/* SPDX-License-Identifier: Apache-2.0 */
/* kiln-runtime-ns: runs a container runtime in an intermediate mount namespace, for runs in a user
 * namespace.
 *
 *   kiln-runtime-ns COVER KEEP... -- RUNTIME [ARG...]
 *
 * The runtime sets up the container's mounts as the mapped root, which gets no capability over the
 * host's root-only directories: the bundle, the root file system's mount point and the runtime's
 * state live under kilnd's 0700 runtime directory (COVER). Here, in a mount namespace of its own, a
 * fresh tmpfs covers COVER and only the KEEP directories (each under COVER) are put back at the same
 * paths, reachable through 0755 directories that no one outside this namespace can see. Paths in
 * config.json stay valid, and nothing on the host is loosened. Propagation from the host is kept
 * (slave), so kilnd's unmounts still reach in; nothing propagates out. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_KEEP 8

static void die(const char *what, const char *path)
{
        fprintf(stderr, "kiln-runtime-ns: %s %s: %s\n", what, path ? path : "", strerror(errno));
        exit(125);
}

/* mkdir -p of @path's components below @cover (all in the fresh tmpfs, or the kept trees' mount
 * points), each 0755. */
static void make_path(const char *cover, const char *path)
{
        char buf[4096];
        size_t cover_len = strlen(cover);

        if (strlen(path) >= sizeof(buf))
                die("path too long:", path);
        strcpy(buf, path);
        for (char *p = buf + cover_len + 1; (p = strchr(p, '/')); p++) {
                *p = '\0';
                if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                        die("mkdir", buf);
                *p = '/';
        }
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                die("mkdir", buf);
}

static int is_below(const char *cover, const char *path)
{
        size_t n = strlen(cover);

        return strncmp(path, cover, n) == 0 && path[n] == '/' && path[n + 1] && !strstr(path, "/..") &&
               !strstr(path, "//");
}

static int makes_container(char **runtime_argv)
{
        for (char **a = runtime_argv; *a; a++)
                if (strcmp(*a, "create") == 0 || strcmp(*a, "run") == 0)
                        return 1;
        return 0;
}

int main(int argc, char **argv)
{
        int trees[MAX_KEEP];
        const char *cover;
        int n_keep = 0, i = 2;

        if (argc < 4 || argv[1][0] != '/') {
                fprintf(stderr, "usage: kiln-runtime-ns COVER KEEP... -- RUNTIME [ARG...]\n");
                return 125;
        }
        cover = argv[1];
        /* Only the verbs that make a container set up mounts; the others (start, kill, delete, state)
         * touch nothing but the runtime's state and go straight through. */
        for (; i < argc && strcmp(argv[i], "--") != 0; i++)
                ;
        if (i + 1 < argc && !makes_container(argv + i + 1)) {
                execv(argv[i + 1], argv + i + 1);
                die("exec", argv[i + 1]);
        }
        i = 2;
        /* kilnd's umask (0077) would shut the mapped root out of the directories made here. */
        umask(0022);
        if (unshare(CLONE_NEWNS) < 0)
                die("unshare", "CLONE_NEWNS");
        if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
                die("mount --make-rslave", "/");

        /* Take the kept trees before the tmpfs hides them. */
        for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
                if (n_keep == MAX_KEEP || !is_below(cover, argv[i]))
                        die("refusing to keep", argv[i]);
                trees[n_keep] =
                        open_tree(AT_FDCWD, argv[i], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
                if (trees[n_keep] < 0)
                        die("open_tree", argv[i]);
                n_keep++;
        }
        if (i + 1 >= argc)
                die("no runtime to run after", "--");

        if (mount("tmpfs", cover, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=64k") < 0)
                die("mount tmpfs on", cover);
        for (int k = 0; k < n_keep; k++) {
                const char *path = argv[2 + k];
                make_path(cover, path);
                if (move_mount(trees[k], "", AT_FDCWD, path, MOVE_MOUNT_F_EMPTY_PATH) < 0)
                        die("move_mount to", path);
                close(trees[k]);
        }
        execv(argv[i + 1], argv + i + 1);
        die("exec", argv[i + 1]);
}

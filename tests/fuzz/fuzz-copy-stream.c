/* SPDX-License-Identifier: Apache-2.0 */
/* A Copy's tar stream: kiln_copy_in_run() (service/copy/copy.c), which kilnd runs as root on what a
 * caller sends, unpacks the input into /dest of a scratch root file system. Beside the root lies an
 * "outside" directory, and inside it symlinks lead there and to the root's /etc: after every input
 * the outside must still be empty and /etc untouched (nothing written through a symlink or ".."). A
 * refusal carries a message. Limits: 1 MiB, 256 entries. The input is the stream. */
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "copy/copy.h"
#include "spec/spec.h"
#include "fuzz-common.h"
#include "base/fs-util.h"
#include "base/kiln-common.h"

static int base_fd = -1; /* holds root/ and outside/ */

static int count_entries(int dirfd, const char *name)
{
        int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        DIR *d;
        struct dirent *de;
        int n = 0;

        if (fd < 0 || !(d = fdopendir(fd)))
                abort();
        while ((de = readdir(d)))
                if (!g_str_equal(de->d_name, ".") && !g_str_equal(de->d_name, ".."))
                        n++;
        closedir(d);
        return n;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        g_autofree char *base = g_dir_make_tmp("kiln-fuzz-copy-XXXXXX", NULL);

        fuzz_setup_logging();
        if (!base)
                abort();
        base_fd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (base_fd < 0 || mkdirat(base_fd, "outside", 0755) < 0 || mkdirat(base_fd, "root", 0755) < 0 ||
            mkdirat(base_fd, "root/etc", 0755) < 0 || symlinkat("../outside", base_fd, "root/up") < 0 ||
            symlinkat("/etc", base_fd, "root/to-etc") < 0)
                abort();
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        g_auto(KilnCopyIn) job = {.stream_fd = -1, .root_fd = -1};
        g_autoptr(GError) error = NULL;
        int memfd = memfd_create("stream", MFD_CLOEXEC);
        int root_fd = -1;

        if (memfd < 0 || (size > 0 && write(memfd, data, size) != (ssize_t)size) ||
            lseek(memfd, 0, SEEK_SET) != 0)
                abort();
        root_fd = openat(base_fd, "root", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root_fd < 0)
                abort();
        job.stream_fd = memfd;
        job.root_fd = root_fd;
        job.dest = g_strdup("/dest");
        /* Container root is the fuzzing user, as a user namespace's is its owner: chown works unprivileged.
         */
        job.uid_map = g_array_new(FALSE, FALSE, sizeof(KilnIdMapping));
        job.gid_map = g_array_new(FALSE, FALSE, sizeof(KilnIdMapping));
        g_array_append_val(job.uid_map,
                           ((KilnIdMapping){.container_id = 0, .host_id = getuid(), .size = 1}));
        g_array_append_val(job.gid_map,
                           ((KilnIdMapping){.container_id = 0, .host_id = getgid(), .size = 1}));
        job.limits = (KilnCopyLimits){1024 * 1024, 256};
        if (!kiln_copy_in_run(&job, NULL, &error) && (!error || !error->message || !*error->message))
                abort(); /* a refusal says why */
        if (count_entries(base_fd, "outside") != 0 || count_entries(base_fd, "root/etc") != 0)
                abort(); /* written through a symlink, out of the destination */
        if (kiln_rm_rf_at(root_fd, "dest", NULL) < 0)
                abort();
        return 0;
}

/* SPDX-License-Identifier: Apache-2.0 */
#include <elf.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "busybox-rootfs.h"

static const char *const applets[] = {"sh",   "ls",  "cat",      "echo",     "id",     "true",  "false",
                                      "env",  "pwd", "mkdir",    "touch",    "stat",   "sleep", "grep",
                                      "head", "wc",  "hostname", "readlink", "ulimit", "tty",   "stty",
                                      "seq",  "yes", "kill",     "ps"};

gboolean test_is_static_elf(const char *path)
{
        g_autofree char *data = NULL;
        gsize len;
        const Elf64_Ehdr *eh;

        if (!g_file_get_contents(path, &data, &len, NULL) || len < sizeof(Elf64_Ehdr))
                return FALSE;
        eh = (const Elf64_Ehdr *)data;
        if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
            eh->e_phoff + (guint64)eh->e_phnum * sizeof(Elf64_Phdr) > len)
                return FALSE;
        for (int i = 0; i < eh->e_phnum; i++)
                if (((const Elf64_Phdr *)(data + eh->e_phoff))[i].p_type == PT_INTERP)
                        return FALSE;
        return TRUE;
}

void test_write_file(const char *dir, const char *name, const char *text, int mode)
{
        g_autofree char *path = g_build_filename(dir, name, NULL);

        g_assert_true(g_file_set_contents_full(path, text, -1, G_FILE_SET_CONTENTS_NONE, mode, NULL));
}

void test_copy_file(const char *from, const char *to, int mode)
{
        g_autofree char *data = NULL;
        gsize len;

        g_assert_true(g_file_get_contents(from, &data, &len, NULL));
        g_assert_true(g_file_set_contents_full(to, data, (gssize)len, G_FILE_SET_CONTENTS_NONE, mode, NULL));
}

void test_make_busybox_rootfs(const char *dir)
{
        static const char *const dirs[] = {"bin",  "etc",  "dev",          "proc", "sys",     "run", "tmp",
                                           "root", "home", "home/builder", "usr",  "usr/bin", "var", "data"};
        g_autofree char *bin = g_build_filename(dir, "bin", NULL);
        g_autofree char *etc = g_build_filename(dir, "etc", NULL);
        g_autofree char *busybox = g_build_filename(bin, "busybox", NULL);
        g_autofree char *tmp = g_build_filename(dir, "tmp", NULL);
        g_autofree char *root = g_build_filename(dir, "root", NULL);
        g_autofree char *home = g_build_filename(dir, "home", "builder", NULL);

        for (size_t i = 0; i < G_N_ELEMENTS(dirs); i++) {
                g_autofree char *d = g_build_filename(dir, dirs[i], NULL);
                g_assert_no_errno(g_mkdir_with_parents(d, 0755));
        }
        g_assert_no_errno(chmod(dir, 0755));
        g_assert_no_errno(chmod(tmp, 01777));
        g_assert_no_errno(chmod(root, 0700));
        g_assert_no_errno(chown(home, 1000, 1000));
        test_copy_file("/bin/busybox", busybox, 0755);
        for (size_t i = 0; i < G_N_ELEMENTS(applets); i++) {
                g_autofree char *link = g_build_filename(bin, applets[i], NULL);
                g_assert_no_errno(symlink("busybox", link));
        }
        test_write_file(etc, "passwd",
                        "root:x:0:0:root:/root:/bin/sh\nbuilder:x:1000:1000:builder:/home/builder:/bin/sh\n"
                        "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
                        0644);
        test_write_file(etc, "group",
                        "root:x:0:\nwheel:x:10:\nusers:x:100:\nbuilder:x:1000:\nnobody:x:65534:\n", 0644);
        test_write_file(etc, "not-executable", "#!/bin/sh\necho no\n", 0644);
        test_write_file(etc, "garbage", "garbage\n", 0755);
}

/* SPDX-License-Identifier: Apache-2.0 */
/* The tar streams of kiln copy and kiln add, in a module of their own (kiln-cli-tar.so, tar-module.c)
 * that only those verbs load: libarchive and what it brings (libxml2, ICU, libstdc++, nettle, ...)
 * would cost every other verb — `kiln run` first — about 2 ms of loading and relocation. */
#pragma once

#include <stdbool.h>

#include <glib.h>

#define KILN_CLI_TAR_MODULE "kiln-cli-tar.so"
#define KILN_CLI_TAR_SYMBOL "kiln_cli_tar_module"
#define KILN_TAR_BLOCK (64 * 1024)

/* Into a builder: the sources, read as the caller, as a tar stream on @fd. */
typedef struct {
        char **sources; /* as given */
        gsize n_sources;
        bool add; /* kiln add: a tar archive source is unpacked */
        bool *is_archive;
        int fd;      /* the pipe's write end (the writer) */
        void *out;   /* the stream being written (the module's) */
        char *error; /* the first failure, to print */
        /* Told what is skipped (not a file, directory or symlink), one message at a time. */
        void (*warn)(const char *message);
        char buf[KILN_TAR_BLOCK];
} KilnTarSender;

/* Out of a builder: the stream on @fd unpacked at @dest, as the caller. */
typedef struct {
        int fd; /* the pipe's read end */
        char *dest;
        char *error;
        char buf[KILN_TAR_BLOCK];
} KilnTarReceiver;

typedef struct KilnCliTar {
        /* Whether @path is a regular file libarchive reads as a tar archive (any compression). */
        bool (*is_archive)(const char *path);
        /* Opens every source once, as the caller, writing nothing; false with @s->error set. */
        bool (*check_sources)(KilnTarSender *s);
        /* Thread functions (GThreadFunc) of a KilnTarSender and a KilnTarReceiver: the first failure
         * in ->error; both close ->fd... see cmd-copy.c. */
        gpointer (*send)(gpointer sender);
        gpointer (*receive)(gpointer receiver);
} KilnCliTar;

/* The module, loaded on first use (module-load.c); NULL (and a message on stderr) when it cannot be. */
const KilnCliTar *kiln_cli_tar(void);

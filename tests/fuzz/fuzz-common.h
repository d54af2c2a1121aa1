/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the fuzz targets (libFuzzer, tests/fuzz/README.md): turning the fuzzer's bytes into the
 * strings a parser takes, and a log policy. Header-only: each target is one executable. */
#pragma once

#include <glib.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* The input as a C string, cut at the first NUL: what arrives over D-Bus or from a command line
 * cannot hold a NUL either. */
static inline char *fuzz_string(const uint8_t *data, size_t size)
{
        return g_strndup((const char *)data, size);
}

/* The input cut at the first @sep into two buffers (not NUL-terminated by themselves: the copies
 * are). *rest is NULL when there is no @sep. */
static inline char *fuzz_cut(const uint8_t *data, size_t size, char sep, const uint8_t **rest,
                             size_t *rest_size)
{
        const uint8_t *p = memchr(data, sep, size);

        if (!p) {
                *rest = NULL;
                *rest_size = 0;
                return g_strndup((const char *)data, size);
        }
        *rest = p + 1;
        *rest_size = size - (size_t)(p + 1 - data);
        return g_strndup((const char *)data, (gsize)(p - data));
}

static GLogWriterOutput fuzz_log_writer(GLogLevelFlags level, const GLogField *fields, gsize n_fields,
                                        gpointer data)
{
        if (level & (G_LOG_LEVEL_DEBUG | G_LOG_LEVEL_INFO | G_LOG_LEVEL_MESSAGE))
                return G_LOG_WRITER_HANDLED;
        g_log_writer_standard_streams(level, fields, n_fields, data);
        /* SIGABRT, which libFuzzer catches (it saves the input); GLib's own fatal path would raise
         * SIGTRAP, which it does not. */
        abort();
}

/* A critical or a warning from GLib or json-glib is a broken contract (a NULL where a string was
 * promised, a member of the wrong type read without a check): abort, so the fuzzer reports it as
 * a crash with its input. Messages below a warning (kiln logs what it skips) are dropped. */
static inline void fuzz_setup_logging(void)
{
        g_log_set_writer_func(fuzz_log_writer, NULL, NULL);
}

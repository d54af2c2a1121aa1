/* SPDX-License-Identifier: Apache-2.0 */
/* Small helpers shared by every part of kiln: error names, cleanup attributes. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <unistd.h>

#include <glib.h>

#define KILN_BUS_NAME "org.kiln.Builder1"
#define KILN_MANAGER_PATH "/org/kiln/Builder1"
#define KILN_BUILDER_PATH_PREFIX "/org/kiln/Builder1/builder"
#define KILN_IMAGE_PATH_PREFIX "/org/kiln/Builder1/image"
#define KILN_MANAGER_INTERFACE "org.kiln.Builder1.Manager"
#define KILN_BUILDER_INTERFACE "org.kiln.Builder1.Builder"
#define KILN_IMAGE_INTERFACE "org.kiln.Builder1.Image"

#define KILN_ERROR_NOT_FOUND "org.kiln.Builder1.Error.NotFound"
#define KILN_ERROR_EXISTS "org.kiln.Builder1.Error.Exists"
#define KILN_ERROR_INVALID_ARGUMENT "org.kiln.Builder1.Error.InvalidArgument"
#define KILN_ERROR_BUSY "org.kiln.Builder1.Error.Busy"
#define KILN_ERROR_LIMIT_EXCEEDED "org.kiln.Builder1.Error.LimitExceeded"
#define KILN_ERROR_RUNTIME_FAILED "org.kiln.Builder1.Error.RuntimeFailed"
/* An internal failure: the reply says only this and an id; kilnd's log has the details under the id. */
#define KILN_ERROR_FAILED "org.kiln.Builder1.Error.Failed"

/* A builder id is 64 lowercase hex characters; a unique prefix of this many may name it. */
#define KILN_ID_LENGTH 64
#define KILN_ID_MIN_PREFIX 12

#define _cleanup_(f) __attribute__((cleanup(f)))

/* Closes *@fd if open and forgets it (-1), keeping errno. */
static inline void kiln_close_fdp(int *fd)
{
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
                *fd = -1;
        }
}
#define _cleanup_close_ __attribute__((cleanup(kiln_close_fdp)))

static inline int kiln_steal_fd(int *fd)
{
        int r = *fd;
        *fd = -1;
        return r;
}

static inline void kiln_close_fd_element(gpointer fd)
{
        kiln_close_fdp(fd);
}

/* A GArray of int descriptors, each closed when the array is freed (or its size cut). */
static inline GArray *kiln_fd_array_new(void)
{
        GArray *fds = g_array_new(FALSE, FALSE, sizeof(int));

        g_array_set_clear_func(fds, kiln_close_fd_element);
        return fds;
}

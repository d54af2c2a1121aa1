/* SPDX-License-Identifier: Apache-2.0 */
/* One error type inside the service (GError, domain KILN_ERROR), mapped to D-Bus error names once,
 * where a method replies. */
#pragma once

#include <gio/gio.h>
#include <systemd/sd-bus.h>

#include "base/kiln-common.h"

#define KILN_ERROR (kiln_error_quark())
GQuark kiln_error_quark(void);

typedef enum {
        KILN_ERROR_CODE_FAILED,
        KILN_ERROR_CODE_INVALID_ARGUMENT,
        KILN_ERROR_CODE_LIMIT_EXCEEDED,
        KILN_ERROR_CODE_NOT_FOUND,
        KILN_ERROR_CODE_EXISTS,
        KILN_ERROR_CODE_BUSY,
        KILN_ERROR_CODE_RUNTIME_FAILED,
        KILN_ERROR_CODE_ACCESS_DENIED,
} KilnErrorCode;

/* Sets @error (KILN_ERROR, @code) and returns FALSE, for `return kiln_fail(...)`. */
gboolean kiln_fail(GError **error, KilnErrorCode code, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
/* InvalidArgument "Invalid ARG: REASON": every such message names the argument. */
gboolean kiln_invalid(GError **error, const char *arg, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

/* Directories of kilnd's own (state, runtime files): callers never learn host paths under them. An I/O
 * error whose message names one is answered as an internal failure; a KILN_ERROR keeps its name, with
 * each such path replaced by a placeholder, or, under a directory of containers' roots (DIR/ID/PATH), by
 * the PATH inside the container. */
void kiln_error_hide_paths_under(const char *dir);
void kiln_error_show_roots_under(const char *dir);

/* Fills @bus_error from @error (KILN_ERROR or G_IO_ERROR codes) and returns the negative errno
 * sd-bus handlers return. */
int kiln_error_to_bus(const GError *error, sd_bus_error *bus_error);

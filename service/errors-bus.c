/* SPDX-License-Identifier: Apache-2.0 */
/* KILN_ERROR and G_IO_ERROR codes as D-Bus error names, where a method replies. */
#include "errors.h"

static const char *const kiln_error_names[] = {
        [KILN_ERROR_CODE_FAILED] = SD_BUS_ERROR_FAILED,
        [KILN_ERROR_CODE_INVALID_ARGUMENT] = KILN_ERROR_INVALID_ARGUMENT,
        [KILN_ERROR_CODE_LIMIT_EXCEEDED] = KILN_ERROR_LIMIT_EXCEEDED,
        [KILN_ERROR_CODE_NOT_FOUND] = KILN_ERROR_NOT_FOUND,
        [KILN_ERROR_CODE_EXISTS] = KILN_ERROR_EXISTS,
        [KILN_ERROR_CODE_BUSY] = KILN_ERROR_BUSY,
        [KILN_ERROR_CODE_RUNTIME_FAILED] = KILN_ERROR_RUNTIME_FAILED,
        [KILN_ERROR_CODE_ACCESS_DENIED] = SD_BUS_ERROR_ACCESS_DENIED,
};

static const char *io_error_name(int code)
{
        switch (code) {
        case G_IO_ERROR_NOT_FOUND:
                return KILN_ERROR_NOT_FOUND;
        case G_IO_ERROR_EXISTS:
                return KILN_ERROR_EXISTS;
        case G_IO_ERROR_PERMISSION_DENIED:
                return SD_BUS_ERROR_ACCESS_DENIED;
        case G_IO_ERROR_NOT_DIRECTORY:
        case G_IO_ERROR_INVALID_ARGUMENT:
        case G_IO_ERROR_INVALID_FILENAME:
                return KILN_ERROR_INVALID_ARGUMENT;
        case G_IO_ERROR_BUSY:
                return KILN_ERROR_BUSY;
        case G_IO_ERROR_NO_SPACE:
        case G_IO_ERROR_TOO_MANY_OPEN_FILES:
                return KILN_ERROR_LIMIT_EXCEEDED;
        default:
                return SD_BUS_ERROR_FAILED;
        }
}

int kiln_error_to_bus(const GError *error, sd_bus_error *bus_error)
{
        const char *name = SD_BUS_ERROR_FAILED;

        if (error->domain == KILN_ERROR && error->code >= 0 &&
            (size_t)error->code < G_N_ELEMENTS(kiln_error_names))
                name = kiln_error_names[error->code];
        else if (error->domain == G_IO_ERROR)
                name = io_error_name(error->code);
        return sd_bus_error_set(bus_error, name, error->message);
}

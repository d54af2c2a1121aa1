/* SPDX-License-Identifier: Apache-2.0 */
#define KILN_ARCHIVE_LOADER
#include "base/archive-load.h"

#include <dlfcn.h>
#include <stddef.h>

#include "base/errors.h"

static KilnArchiveApi api;
static char *load_error; /* why the one attempt failed, or NULL */

static const struct {
        const char *name;
        size_t offset;
} symbols[] = {
#define KILN_ARCHIVE_SYMBOL(name) {#name, offsetof(KilnArchiveApi, name)},
        KILN_ARCHIVE_FUNCTIONS(KILN_ARCHIVE_SYMBOL)
#undef KILN_ARCHIVE_SYMBOL
};

/* One attempt for the process: RTLD_NOW so that a library without one of the functions fails here,
 * not at its first call; the handle stays open for good (the functions are kilnd's from then on). */
static void load_once(void)
{
        void *handle = dlopen(KILN_LIBARCHIVE_SONAME, RTLD_NOW | RTLD_LOCAL);

        if (!handle) {
                load_error = g_strdup(dlerror());
                return;
        }
        for (size_t i = 0; i < G_N_ELEMENTS(symbols); i++) {
                void *f = dlsym(handle, symbols[i].name);
                if (!f) {
                        load_error =
                                g_strdup_printf("%s has no %s", KILN_LIBARCHIVE_SONAME, symbols[i].name);
                        memset(&api, 0, sizeof(api));
                        return;
                }
                memcpy((char *)&api + symbols[i].offset, &f, sizeof(f));
        }
}

gboolean kiln_archive_load(GError **error)
{
        static gsize done;

        if (g_once_init_enter(&done)) {
                load_once();
                g_once_init_leave(&done, 1);
        }
        if (load_error)
                return kiln_fail(error, KILN_ERROR_CODE_FAILED,
                                 "Cannot load libarchive (Debian package libarchive13): %s", load_error);
        return TRUE;
}

const KilnArchiveApi *kiln_archive_api(void)
{
        g_autoptr(GError) error = NULL;

        if (!kiln_archive_load(&error))
                g_error("%s", error->message);
        return &api;
}

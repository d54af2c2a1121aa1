/* SPDX-License-Identifier: Apache-2.0 */
/* CDI spec files (run/cdi.c): kiln_cdi_spec_parse() on the bytes of one spec, then the lookup of a
 * qualified name among it. Specs are the administrator's (or a vendor tool's), read for any run that
 * names a CDI device, so this guards kilnd against a broken or hostile file in /etc/cdi. The input is
 * the spec. */
#include "fuzz-common.h"
#include "run/cdi.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        fuzz_setup_logging();
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(GPtrArray) specs = g_ptr_array_new_with_free_func((GDestroyNotify)kiln_cdi_spec_free);
        const KilnCdiSpec *found = NULL;
        KilnCdiSpec *spec;
        g_autofree char *name = NULL;

        spec = kiln_cdi_spec_parse((const char *)data, size, "fuzz.json", &error);
        if (!spec) {
                if (!error || !*error->message)
                        abort();
                return 0;
        }
        /* What the parser accepted is whole: a kind, devices with names, lists that exist. */
        if (!spec->kind || !spec->devices || spec->devices->len == 0 || !spec->edits.env)
                abort();
        g_ptr_array_add(specs, spec);
        for (guint i = 0; i < spec->devices->len; i++) {
                const KilnCdiDevice *d = spec->devices->pdata[i];
                g_autoptr(GError) local = NULL;

                g_free(name);
                name = g_strconcat(spec->kind, "=", d->name, NULL);
                if (kiln_cdi_find(specs, "devices[0]", name, &found, &local) != d || found != spec)
                        abort();
        }
        return 0;
}

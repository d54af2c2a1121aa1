/* SPDX-License-Identifier: Apache-2.0 */
/* For the targets whose parsed value ends in a spec: the smallest valid KilnSpecInput (as
 * tests/unit/test-spec.c's base input), and a caller's parsed volume turned into a KilnMount the way
 * service/run/run.c's add_volume() does (without its file system steps), so the generator's own checks
 * of mount options are fuzzed too. */
#pragma once

#include "run/run-volumes.h"
#include "spec/spec.h"

static const char *const fuzz_argv[] = {"/bin/sh", NULL};
static const guint32 fuzz_gids[] = {0};

static inline void fuzz_spec_input(KilnSpecInput *in)
{
        *in = (KilnSpecInput){
                .id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                .rootfs = "/run/kiln/mounts/0123456789ab",
                .argv = fuzz_argv,
                .cwd = "/",
                .additional_gids = fuzz_gids,
                .n_additional_gids = G_N_ELEMENTS(fuzz_gids),
                .home = "/root",
                .last_cap = 40,
        };
}

/* A parsed volume or mount (run-volumes.h) as service/run/run.c's add_volume() turns it into a KilnMount,
 * without its file system steps: an overlay gets fixed upper and work directories, a bind of a
 * descriptor a fixed source. The strings are added to @keep, which owns them. */
static inline KilnMount fuzz_volume_mount(GPtrArray *keep, const KilnRunVolume *v)
{
        KilnMount m = {.type = KILN_MOUNT_BIND,
                       .source = v->source ? v->source : "/run/kiln/bundles/x/volume-0",
                       .destination = v->destination,
                       .arg = v->arg};
        GPtrArray *o = g_ptr_array_new();

        if (v->kind == KILN_RUN_VOLUME_TMPFS) {
                m.type = KILN_MOUNT_TMPFS;
                m.source = NULL;
        } else if (v->kind == KILN_RUN_VOLUME_OVERLAY) {
                m.type = KILN_MOUNT_OVERLAY;
                g_ptr_array_add(o, g_strconcat("lowerdir=", m.source, NULL));
                g_ptr_array_add(o, g_strdup("upperdir=/run/kiln/bundles/x/overlay-0/upper"));
                g_ptr_array_add(o, g_strdup("workdir=/run/kiln/bundles/x/overlay-0/work"));
        }
        for (char **p = v->options; p && *p; p++)
                g_ptr_array_add(o, g_strdup(*p));
        g_ptr_array_add(o, NULL);
        g_ptr_array_add(keep, o->pdata);
        m.options = (const char *const *)g_ptr_array_free(o, FALSE);
        return m;
}

/* Generates the spec with @mounts; a refusal must say why. Returns whether it was accepted. */
static inline gboolean fuzz_generate(const KilnMount *mounts, gsize n_mounts)
{
        KilnSpecInput in;
        g_autoptr(GError) error = NULL;
        g_autoptr(JsonNode) spec = NULL;

        fuzz_spec_input(&in);
        in.mounts = mounts;
        in.n_mounts = n_mounts;
        spec = kiln_spec_generate(&in, &error);
        if (!spec && (!error || !error->message || !*error->message))
                abort();
        if (spec) {
                gsize length = 0;
                g_autofree char *text = kiln_spec_to_data(spec, FALSE, &length);
                if (!text || !length)
                        abort();
        }
        return spec != NULL;
}

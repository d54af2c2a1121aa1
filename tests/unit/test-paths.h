/* SPDX-License-Identifier: Apache-2.0 */
/* Where a unit test finds its data (golden files, the default seccomp profile) without anything in
 * meson.build: meson compiles with paths relative to the build root, so this header's __FILE__ is
 * "<source dir from the build root>/tests/unit/test-paths.h", and the build root is three levels
 * above the test binary (BUILD/tests/unit/test-NAME). */
#pragma once

#include <glib.h>

static inline char *kiln_test_source_root(void)
{
        g_autofree char *here = g_path_get_dirname(__FILE__); /* .../tests/unit */
        g_autofree char *unit = NULL;

        if (g_path_is_absolute(here)) {
                unit = g_strdup(here);
        } else {
                g_autofree char *exe = g_file_read_link("/proc/self/exe", NULL);
                g_autofree char *d1 = exe ? g_path_get_dirname(exe) : g_get_current_dir();
                g_autofree char *d2 = g_path_get_dirname(d1);
                g_autofree char *build_root = g_path_get_dirname(d2);
                unit = g_canonicalize_filename(here, build_root);
                if (!g_file_test(unit, G_FILE_TEST_IS_DIR)) {
                        g_free(unit);
                        unit = g_canonicalize_filename(here, NULL);
                }
        }
        return g_canonicalize_filename("../..", unit);
}

/* A path under the source tree, e.g. kiln_test_source_path("data/seccomp/default.json"). */
static inline char *kiln_test_source_path(const char *relative)
{
        g_autofree char *root = kiln_test_source_root();

        return g_build_filename(root, relative, NULL);
}

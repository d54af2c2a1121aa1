/* SPDX-License-Identifier: Apache-2.0 */
/* kiln-isolate's reader of a bundle's config.json: iso_spec_read() (service/isolate/spec-read.c).
 * kilnd writes the spec, but from a caller's options, and kiln-isolate runs as root; it checks the
 * whole document before doing anything, so every input must end in a spec or an error, never a
 * crash; then (see below) the seccomp filter it builds from the spec, iso_seccomp_prepare()
 * (seccomp.c). The input is the file; each is written to config.json in a private directory. */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "fuzz-common.h"
#include "isolate/isolate.h"

static char *bundle;
static char *config_path;
static gboolean with_seccomp;

static void remove_bundle(void)
{
        unlink(config_path);
        rmdir(bundle);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        /* In memory where there is a /dev/shm: a write per input to a disk would be most of the time. */
        const char *base = g_file_test("/dev/shm", G_FILE_TEST_IS_DIR) ? "/dev/shm" : g_get_tmp_dir();

        fuzz_setup_logging();
        /* KILN_FUZZ_ISOLATE_SECCOMP=0 leaves the filter stage out (to fuzz the reader alone, faster). */
        with_seccomp = g_strcmp0(g_getenv("KILN_FUZZ_ISOLATE_SECCOMP"), "0") != 0;
        bundle = g_build_filename(base, "kiln-fuzz-isolate-XXXXXX", NULL);
        if (!g_mkdtemp(bundle))
                abort();
        config_path = g_build_filename(bundle, "config.json", NULL);
        atexit(remove_bundle);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        g_autoptr(IsoSpec) spec = NULL;
        g_autoptr(GError) error = NULL;
        int fd = open(config_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);

        if (fd < 0 || write(fd, data, size) != (ssize_t)size)
                abort();
        close(fd);
        spec = iso_spec_read(bundle, &error);
        if (!spec) {
                if (!error || !*error->message)
                        abort();
                return 0;
        }
        if (!spec->root || !g_path_is_absolute(spec->root))
                abort();
        (void)iso_spec_new_namespaces(spec);
        /* The BPF program kiln-isolate builds from the spec's linux.seccomp (no cache):
         * kiln_seccomp_filter_new() checks the object's shape first (it once crashed on a rule
         * without "action" or "names", or an argument without "op"). */
        if (with_seccomp) {
                g_autoptr(IsoSeccomp) filter = NULL;
                g_autoptr(GError) local = NULL;

                filter = iso_seccomp_prepare(spec, NULL, &local);
                if (!filter && local && !*local->message)
                        abort();
        }
        return 0;
}

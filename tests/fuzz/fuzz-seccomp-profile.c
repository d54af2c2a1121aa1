/* SPDX-License-Identifier: Apache-2.0 */
/* Seccomp profiles: the JSON of a profile resolved for a process, kiln_seccomp_profile_resolve()
 * (seccomp-profile.c, the pure part of kiln_seccomp_profile_load(), which only reads the file
 * first), then, for a profile it accepts, the libseccomp filter kiln-isolate builds from the result,
 * kiln_seccomp_filter_new(). Profiles come from the data directory (a caller names one), so this
 * guards kilnd against a broken or hostile file there, and the filter builder against what the
 * resolver lets through. The host is fixed (x86_64, Linux 6.1) so that a crash reproduces anywhere.
 * The input is the profile. */
#include "fuzz-common.h"
#include "spec/seccomp-profile.h"

static const char *const caps[] = {"CAP_CHOWN",  "CAP_DAC_OVERRIDE", "CAP_FOWNER",     "CAP_KILL",
                                   "CAP_SETUID", "CAP_SETGID",       "CAP_SYS_CHROOT", NULL};
static const KilnSeccompHost host = {.arch = SCMP_ARCH_X86_64, .kernel_major = 6, .kernel_minor = 1};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        fuzz_setup_logging();
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        g_autoptr(JsonParser) parser = json_parser_new() /* as kiln_seccomp_profile_load() */;
        g_autoptr(JsonNode) resolved = NULL;
        g_autoptr(GError) error = NULL;
        scmp_filter_ctx filter;

        if (size > KILN_SECCOMP_PROFILE_MAX_SIZE ||
            !json_parser_load_from_data(parser, (const char *)data, (gssize)size, NULL))
                return 0;
        resolved =
                kiln_seccomp_profile_resolve("fuzz.json", json_parser_get_root(parser), caps, &host, &error);
        if (!resolved) {
                if (!error || !*error->message)
                        abort();
                return 0;
        }
        g_clear_error(&error);
        filter = kiln_seccomp_filter_new(resolved, &error);
        if (filter)
                seccomp_release(filter);
        else if (!error || !*error->message)
                abort();
        return 0;
}

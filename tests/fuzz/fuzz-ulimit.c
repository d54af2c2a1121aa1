/* SPDX-License-Identifier: Apache-2.0 */
/* --ulimit values ("name=soft[:hard]", one a line): the check a caller's value meets on the bus,
 * kiln_validate_ulimit() (validate.c), and the parser that turns the list into the spec's rlimits,
 * kiln_spec_parse_rlimits() (spec-process.c). They are two parsers of one syntax: a list every
 * value of which the check accepted must parse, and give soft <= hard for each limit set. */
#include "fuzz-common.h"
#include "spec/spec-private.h"
#include "base/validate.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        fuzz_setup_logging();
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        g_autofree char *text = fuzz_string(data, size);
        g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
        g_autoptr(GError) error = NULL;
        gboolean all_valid = TRUE;
        KilnRlimits rlimits = {0};

        for (char **l = lines; *l; l++) {
                g_autoptr(GError) local = NULL;
                if (!kiln_validate_ulimit("ulimits[0]", *l, &local)) {
                        if (!local || !strstr(local->message, "ulimits[0]"))
                                abort(); /* a refusal names the argument */
                        all_valid = FALSE;
                }
        }
        if (!kiln_spec_parse_rlimits((const char *const *)lines, &rlimits, &error)) {
                if (all_valid) {
                        fprintf(stderr, "checked values refused by the spec: %s\n", error->message);
                        abort();
                }
                return 0;
        }
        for (gsize i = 0; i < KILN_N_RLIMITS; i++)
                if (rlimits.set[i] && rlimits.soft[i] > rlimits.hard[i])
                        abort();
        return 0;
}

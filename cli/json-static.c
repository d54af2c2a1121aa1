/* SPDX-License-Identifier: Apache-2.0 */
/* For programs that link json-module.c itself (the unit tests): no loading. */
#include "json-module.h"

extern const KilnCliJson kiln_cli_json_module;

const KilnCliJson *kiln_cli_json(void)
{
        return &kiln_cli_json_module;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* What in a run weakens isolation (DESIGN.md), decided on the resolved configuration (builder
 * defaults merged with the run's options) before anything changes: a run with any of it needs
 * org.kiln.builder1.run-privileged instead of org.kiln.builder1.run. */
#pragma once

#include "run/run-options.h"
#include "run/run.h"

/* The reasons, as short phrases for the authorization dialog and errors ("network=host",
 * "cap_add CAP_SYS_ADMIN", "volume source /root, which the caller cannot read"); empty when the run
 * keeps isolation intact. Volumes and mounts are judged from @options->resolved_volumes
 * (kiln_run_volumes_resolve() made it first), the list the run is prepared from. NULL with
 * InvalidArgument for an option that cannot be resolved. */
GPtrArray *kiln_run_weakenings(const KilnRunInput *input, KilnRunOptions *options, const KilnCreds *caller,
                               GError **error);

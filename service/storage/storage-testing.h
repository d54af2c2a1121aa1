/* SPDX-License-Identifier: Apache-2.0 */
/* For the tests only, out of storage.h: kilnd never calls these. */
#pragma once

#include "storage/storage.h"

/* Gives overlayfs its layers by path, as before Linux 6.13 (found out on the first mount otherwise):
 * for the tests of that path. */
void kiln_storage_prefer_layer_paths(KilnStorage *storage);

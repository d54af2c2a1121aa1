/* SPDX-License-Identifier: Apache-2.0 */
/* kiln-import's records beside the layers: STATE/layers/.sizes/<layer> (the bytes of file content a
 * layer holds, for kilnd's per-user bound) and STATE/layers/.fingerprints/<fingerprint> (what a full,
 * verified read of an unchanged source found). Both import modes write them the same way. */
#pragma once

#define KILN_IMPORT_SIZES_DIR ".sizes"
#define KILN_IMPORT_FINGERPRINTS_DIR ".fingerprints"

/* LAYERS/DIR/NAME holding @text, whole or not at all (a .tmp- file renamed over it). Best effort: a
 * record that is not there costs a shortcut (or, for a size, counts the layer as 0 bytes), which
 * every reader tolerates. @layers_fd is STATE/layers, root's and writable by nobody else. */
void kiln_import_write_record(int layers_fd, const char *dir, const char *name, const char *text);

/* SPDX-License-Identifier: Apache-2.0 */
/* The verbs of `kiln`. Each gets argv with argv[0] the verb's name and returns the exit status. */
#pragma once

int kiln_verb_from(int argc, char **argv);
int kiln_verb_containers(int argc, char **argv);
int kiln_verb_inspect(int argc, char **argv);
int kiln_verb_config(int argc, char **argv);
int kiln_verb_run(int argc, char **argv);
int kiln_verb_rm(int argc, char **argv);
int kiln_verb_mount(int argc, char **argv);
int kiln_verb_umount(int argc, char **argv);
int kiln_verb_copy(int argc, char **argv);
int kiln_verb_add(int argc, char **argv);
int kiln_verb_info(int argc, char **argv);
int kiln_verb_version(int argc, char **argv);
int kiln_verb_prune(int argc, char **argv); /* run parity: caches */
/* images out (cmd-image.c) */
int kiln_verb_commit(int argc, char **argv);
int kiln_verb_images(int argc, char **argv);
int kiln_verb_rmi(int argc, char **argv);
int kiln_verb_tag(int argc, char **argv);
int kiln_verb_push(int argc, char **argv);

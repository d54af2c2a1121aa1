/* SPDX-License-Identifier: Apache-2.0 */
/* A text polkit agent for the user at the terminal: pkttyagent, as systemctl runs it. */
#pragma once

/* Starts `pkttyagent --notify-fd N` (with --fallback in a logind session; it registers for this
 * process) and waits until it has registered with polkit, so that a call sent next may ask for a
 * password on the terminal. Does it once per process; does nothing for root (kilnd never asks
 * root), without a controlling terminal, or when pkttyagent is not installed. Not being able to
 * start it is not an error: the call that needs it fails instead. The agent is stopped when kiln
 * exits (an atexit handler) or dies (it gets SIGTERM then). */
void kiln_polkit_agent_open(void);

/* Stops the agent, if one runs, and reaps it. */
void kiln_polkit_agent_close(void);

"""Where the agent runs: a run spec in, an agent result out; handed its clone token, no client."""

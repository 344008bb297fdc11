"""Where the auditor meets people's tools: GitHub (pull-request comments), Lightning and Hugging Face trainers.
The trainer integrations import their trainer only when used: lightning and transformers are optional extras."""

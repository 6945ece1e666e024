"""Log Analytics tables and DCR streams derived from the models (`tables`), and the files
infra/ and kql/ deploy from them (`export`)."""

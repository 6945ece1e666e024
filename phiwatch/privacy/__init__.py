"""Patient-privacy monitoring: the workforce roster and the patient index, held only as keyed
tags, and what an access means against them (docs/privacy.md)."""

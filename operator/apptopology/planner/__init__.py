"""From live to desired: the plan, the comparison with what the API server stores, and the write order
that is never wider on the way."""

"""What a search asks and how it is answered: the query, its vector, the ranking, clip-retrieval."""

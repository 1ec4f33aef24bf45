/\p{Greek}+/

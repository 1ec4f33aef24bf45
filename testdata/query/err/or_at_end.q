foo OR

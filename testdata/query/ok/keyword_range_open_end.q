node:node-5..*
